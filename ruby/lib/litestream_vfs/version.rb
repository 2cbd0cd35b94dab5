# frozen_string_literal: true

module LitestreamVfs
  # Rewritten by ruby/build.py with the version of Cargo.toml.
  VERSION = "0.0.0.dev"
end
