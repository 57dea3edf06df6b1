import CRabbitMQ
import Glibc

/// Memory for the C structures of one library call (strings, table entries), freed together.
///
/// librabbitmq keeps pointers to what it is given (`amqp_bytes_t` does not copy), so everything a
/// call needs must outlive the call; Swift's temporary pointers do not. Owned by the connection's
/// thread and reset after each call.
///
/// A call's memory is carved out of one block kept for the arena's life; only what does not fit
/// is allocated on its own. A publish's properties and headers used to cost a `malloc` and a
/// `free` per string and table entry (about 9 per job on the publishing connection's thread).
final class CArena {
    /// The block calls are carved from: an event's properties and headers fit many times over.
    static let blockSize = 4096
    /// Enough for every C structure librabbitmq takes (`amqp_field_value_t` holds doubles and
    /// pointers).
    private static let alignment = 16

    private let block: UnsafeMutableRawPointer
    /// Where the next carving starts.
    private var used = 0
    /// What did not fit in the block.
    private var allocations: [UnsafeMutableRawPointer] = []

    init() {
        block = UnsafeMutableRawPointer.allocate(byteCount: Self.blockSize, alignment: Self.alignment)
        allocations.reserveCapacity(4)
    }

    deinit {
        reset()
        block.deallocate()
    }

    func reset() {
        used = 0
        for pointer in allocations { free(pointer) }
        allocations.removeAll(keepingCapacity: true)
    }

    func allocate(bytes count: Int) -> UnsafeMutableRawPointer {
        let size = (max(count, 1) + Self.alignment - 1) & ~(Self.alignment - 1)
        if used + size <= Self.blockSize {
            defer { used += size }
            return block + used
        }
        // `malloc` aligns to 16 on every platform the bridge runs on.
        let pointer = malloc(size)!
        allocations.append(pointer)
        return pointer
    }

    func allocate<T>(_ type: T.Type, count: Int) -> UnsafeMutablePointer<T> {
        allocate(bytes: MemoryLayout<T>.stride * count).bindMemory(to: T.self, capacity: count)
    }

    func bytes(_ string: String) -> amqp_bytes_t {
        var string = string
        return string.withUTF8 { bytes(UnsafeRawBufferPointer($0)) }
    }

    func bytes(_ buffer: UnsafeRawBufferPointer) -> amqp_bytes_t {
        guard buffer.count > 0 else { return amqp_empty_bytes }
        let pointer = allocate(bytes: buffer.count)
        pointer.copyMemory(from: buffer.baseAddress!, byteCount: buffer.count)
        return amqp_bytes_t(len: buffer.count, bytes: pointer)
    }

    func cString(_ string: String) -> UnsafePointer<CChar> {
        let utf8 = Array(string.utf8CString)
        let pointer = allocate(CChar.self, count: utf8.count)
        pointer.initialize(from: utf8, count: utf8.count)
        return UnsafePointer(pointer)
    }
}

extension String {
    /// Copies library bytes into a String (invalid UTF-8 is repaired).
    init(amqpBytes bytes: amqp_bytes_t) {
        guard bytes.len > 0, let base = bytes.bytes else {
            self = ""
            return
        }
        let buffer = UnsafeRawBufferPointer(start: base, count: bytes.len)
        self = String(decoding: buffer, as: UTF8.self)
    }
}

extension Array where Element == UInt8 {
    init(amqpBytes bytes: amqp_bytes_t) {
        guard bytes.len > 0, let base = bytes.bytes else {
            self = []
            return
        }
        self = Array(UnsafeRawBufferPointer(start: base, count: bytes.len))
    }
}
