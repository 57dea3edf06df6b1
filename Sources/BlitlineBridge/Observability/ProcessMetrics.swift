#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The bridge's version, as `--version` prints it and `blitline_bridge_build_info` exports it.
public enum BridgeVersion {
    public static let current = "0.2.25"
}

/// The standard process metrics (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
/// `process_open_fds`, `process_max_fds`, `process_start_time_seconds`) and
/// `blitline_bridge_build_info`, read from `/proc/self` when `/metrics` is scraped, in Prometheus
/// text format: the names Prometheus' own client libraries use, so that stock dashboards work.
public enum ProcessMetrics {
    /// The lines to append to the registry's output; a figure `/proc` does not give is left out.
    public static func text() -> String {
        var lines = [
            "# TYPE blitline_bridge_build_info gauge",
            "blitline_bridge_build_info{version=\"\(BridgeVersion.current)\"} 1",
        ]
        func add(_ name: String, _ type: String, _ value: Double?) {
            guard let value else { return }
            lines.append("# TYPE \(name) \(type)")
            lines.append("\(name) \(value)")
        }
        let stat = selfStat()
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        add("process_cpu_seconds_total", "counter", stat.map { ($0.userTicks + $0.systemTicks) / ticks })
        add("process_resident_memory_bytes", "gauge", stat.map { $0.residentPages * Double(sysconf(Int32(_SC_PAGESIZE))) })
        add("process_virtual_memory_bytes", "gauge", stat.map(\.virtualBytes))
        add("process_start_time_seconds", "gauge", stat.flatMap { stat in bootTime().map { $0 + stat.startTicks / ticks } })
        add("process_open_fds", "gauge", openFileDescriptors())
        var limit = rlimit()
        add("process_max_fds", "gauge", getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 ? Double(limit.rlim_cur) : nil)
        return lines.joined(separator: "\n") + "\n"
    }

    private struct Stat {
        var userTicks, systemTicks, startTicks, virtualBytes, residentPages: Double
    }

    /// Fields of `/proc/self/stat` (proc(5)), counted after the command name, which may hold spaces.
    private static func selfStat() -> Stat? {
        guard let text = read("/proc/self/stat"), let close = text.lastIndex(of: ")") else { return nil }
        // Fields from the 3rd (state) on: utime is the 14th, stime 15th, starttime 22nd, vsize
        // 23rd, rss 24th.
        let fields = text[text.index(after: close)...].split(separator: " ")
        func field(_ number: Int) -> Double? { fields.count > number - 3 ? Double(fields[number - 3]) : nil }
        guard let user = field(14), let system = field(15), let start = field(22), let virtual = field(23),
            let resident = field(24)
        else { return nil }
        return Stat(userTicks: user, systemTicks: system, startTicks: start, virtualBytes: virtual, residentPages: resident)
    }

    /// The machine's boot time in seconds since the Unix epoch (`btime` in `/proc/stat`).
    private static func bootTime() -> Double? {
        read("/proc/stat")?.split(separator: "\n").first { $0.hasPrefix("btime ") }
            .flatMap { Double($0.dropFirst(6)) }
    }

    private static func openFileDescriptors() -> Double? {
        guard let directory = opendir("/proc/self/fd") else { return nil }
        defer { closedir(directory) }
        var count = 0
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { count += 1 }
        }
        return Double(count - 1)  // less the directory opendir holds open
    }

    private static func read(_ path: String) -> String? {
        guard let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = fread(&buffer, 1, buffer.count, file)
            if count <= 0 { break }
            bytes += buffer[..<count]
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
