# Built by ruby/build.py, which stages this folder with the library as
# lib/litestream_vfs/litestream-vfs.{so,dylib,dll}, the LICENSE and a
# VERSION file, and sets LITESTREAM_VFS_GEM_PLATFORM (x86_64-linux, ...).
Gem::Specification.new do |s|
  s.name = "litestream-vfs-rs"
  s.version = File.read(File.join(__dir__, "VERSION")).strip
  s.platform = ENV.fetch("LITESTREAM_VFS_GEM_PLATFORM", Gem::Platform::CURRENT.to_s)
  s.summary = "Query a Litestream replica in place from SQLite: the litestream VFS extension (Rust)"
  s.description = "The litestream VFS SQLite extension, prebuilt for one platform, with helpers " \
                  "that load it into the sqlite3 gem and open a replica read-only."
  s.authors = ["litestream-vfs contributors"]
  s.license = "Apache-2.0"
  s.required_ruby_version = ">= 2.7"
  s.files = Dir["lib/**/*.rb"] + Dir["lib/litestream_vfs/litestream-vfs.{so,dylib,dll}"] + ["LICENSE", "README.md"]
  s.require_paths = ["lib"]
  s.add_runtime_dependency "sqlite3", ">= 1.4"
end
