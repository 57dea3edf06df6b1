import Crypto

/// HMAC-SHA256 (RFC 2104) with the key's padded blocks hashed once, when the key is made: each
/// code then costs two SHA-256 passes over the message and the inner digest, fed as raw bytes.
/// swift-crypto's `HMAC<SHA256>`, copied per token and fed through its generic `DataProtocol`
/// path, took two and a half times as long (`deploy/BENCHMARKS.md`, 0.2.9).
struct KeyedSHA256: Sendable {
    private let inner: SHA256
    private let outer: SHA256

    init(key: [UInt8]) {
        var block = [UInt8](repeating: 0, count: 64)
        if key.count > block.count {
            block.replaceSubrange(0..<SHA256.byteCount, with: Array(SHA256.hash(data: key)))
        } else {
            block.replaceSubrange(0..<key.count, with: key)
        }
        var inner = SHA256()
        var outer = SHA256()
        inner.update(data: block.map { $0 ^ 0x36 })
        outer.update(data: block.map { $0 ^ 0x5C })
        self.inner = inner
        self.outer = outer
    }

    /// The code of `prefix` followed by `message`.
    func code(_ prefix: [UInt8], _ message: [UInt8]) -> SHA256Digest {
        var inner = self.inner
        prefix.withUnsafeBytes { inner.update(bufferPointer: $0) }
        message.withUnsafeBytes { inner.update(bufferPointer: $0) }
        var outer = self.outer
        inner.finalize().withUnsafeBytes { outer.update(bufferPointer: $0) }
        return outer.finalize()
    }

    /// Whether `code` is the code of `prefix` followed by `message`, compared in constant time.
    func isCode(_ code: [UInt8], of prefix: [UInt8], _ message: [UInt8]) -> Bool {
        guard code.count == SHA256.byteCount else { return false }
        return self.code(prefix, message).withUnsafeBytes { expected in
            var difference: UInt8 = 0
            for index in 0..<SHA256.byteCount { difference |= expected[index] ^ code[index] }
            return difference == 0
        }
    }
}
