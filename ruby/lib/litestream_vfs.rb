# frozen_string_literal: true

require "uri"

# The litestream VFS extension (Rust build) for Ruby.
#
#   require "litestream_vfs"
#   db = LitestreamVfs.open_replica("s3://bucket/app?region=eu-west-1", poll_interval: "500ms")
#   db.execute("SELECT count(*) FROM orders")
#
# - LitestreamVfs.loadable_path: the bundled library, for any host;
# - LitestreamVfs.load(db): load it into an open SQLite3::Database (the
#   `litestream` VFS then exists for the whole process);
# - LitestreamVfs.load!: load it once per process (e.g. in a Rails initializer,
#   before any replica connection opens);
# - LitestreamVfs.replica_uri(url, **options): file:NAME?vfs=litestream&mode=ro&replica_url=...
# - LitestreamVfs.open_replica(url, **options): load! then open the replica read-only.
module LitestreamVfs
  LIBRARIES = {
    "linux" => "litestream-vfs.so",
    "darwin" => "litestream-vfs.dylib",
    "mingw" => "litestream-vfs.dll",
    "mswin" => "litestream-vfs.dll",
  }.freeze

  class Error < StandardError; end

  @lock = Mutex.new
  @loaded = false

  class << self
    def loadable_path
      key = LIBRARIES.keys.find { |os| RUBY_PLATFORM.include?(os) }
      raise Error, "litestream-vfs-rs: unsupported platform #{RUBY_PLATFORM}" unless key

      path = File.join(__dir__, "litestream_vfs", LIBRARIES[key])
      unless File.file?(path)
        raise Error, "litestream-vfs-rs: #{path} is missing: install the gem built for #{RUBY_PLATFORM}"
      end
      path
    end

    def load(db)
      db.enable_load_extension(true)
      begin
        db.load_extension(loadable_path)
      ensure
        db.enable_load_extension(false)
      end
    end

    def load!
      @lock.synchronize do
        next if @loaded

        require "sqlite3"
        loader = SQLite3::Database.new(":memory:")
        begin
          load(loader)
        ensure
          loader.close
        end
        @loaded = true
      end
      nil
    end

    # NAME only labels the connection: no local file is created. Options are
    # the extension's URI parameters (poll_interval: "500ms", cache_size: "64MB", ...).
    def replica_uri(replica_url = nil, name: "replica.db", **options)
      query = [["vfs", "litestream"], ["mode", "ro"]]
      query << ["replica_url", replica_url] if replica_url
      options.each { |key, value| query << [key.to_s, value.to_s] unless value.nil? }
      "file:#{escape(name).gsub('%2F', '/')}?" + query.map { |k, v| "#{k}=#{escape(v)}" }.join("&")
    end

    def open_replica(replica_url = nil, name: "replica.db", **options)
      load!
      SQLite3::Database.new(replica_uri(replica_url, name: name, **options),
                            flags: SQLite3::Constants::Open::READONLY | SQLite3::Constants::Open::URI)
    end

    private

    # Percent-encodes everything but unreserved characters (RFC 3986).
    def escape(text)
      text.to_s.b.gsub(/[^A-Za-z0-9\-._~]/) { |c| format("%%%02X", c.ord) }
    end
  end
end

require_relative "litestream_vfs/version"
