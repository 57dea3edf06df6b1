import AsyncHTTPClient
import Blitline
import NIOCore

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Measures a job's source image: the real size of a PNG, GIF or JPEG that is a local file or
/// served on a loopback address, a canvas's declared size, and otherwise a size derived from the
/// source's text, so that the same URL always gives the same size.
struct SourceLoader: Sendable {
    let httpClient: HTTPClient
    private static let maximumBytes = 32 << 20

    func size(of src: JSONValue?) async -> Result<ImageSize, SourceError> {
        switch src {
        case .string(let url):
            if let path = Self.localPath(url) { return Self.measureFile(path, src: url) }
            if Self.isLoopback(url) { return await self.measureLoopback(url) }
            return .success(Self.derivedSize(url))
        case .some(let object) where object["name"]?.stringValue == "canvas":
            if let width = object["width"]?.intValue, let height = object["height"]?.intValue, width > 0, height > 0 {
                return .success(ImageSize(width: width, height: height))
            }
            return .success(Self.derivedSize(object.jsonString))
        case .some(let other):
            return .success(Self.derivedSize(other.jsonString))
        case .none:
            return .failure(SourceError(message: "No source for processing"))
        }
    }

    /// A plausible size from the text: width 320…4000, height 240…3000, stable across runs.
    static func derivedSize(_ text: String) -> ImageSize {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash &*= 0x100_0000_01b3
        }
        return ImageSize(width: 320 + Int(hash % 3681), height: 240 + Int((hash >> 32) % 2761))
    }

    private static func localPath(_ url: String) -> String? {
        if url.hasPrefix("file://") { return String(url.dropFirst("file://".count)) }
        if url.hasPrefix("/") { return url }
        return nil
    }

    private static func isLoopback(_ url: String) -> Bool {
        let lowered = url.lowercased()
        return ["http://127.0.0.1", "http://localhost", "http://[::1]", "https://127.0.0.1", "https://localhost"]
            .contains { lowered.hasPrefix($0 + ":") || lowered.hasPrefix($0 + "/") || lowered == $0 }
    }

    private static func measureFile(_ path: String, src: String) -> Result<ImageSize, SourceError> {
        guard let data = try? Data(contentsOf: URL(filePath: path)) else {
            return .failure(SourceError(message: "Failed to download file from \(src). No such file"))
        }
        return Self.measure(Array(data), src: src)
    }

    private func measureLoopback(_ url: String) async -> Result<ImageSize, SourceError> {
        do {
            let response = try await self.httpClient.execute(HTTPClientRequest(url: url), timeout: .seconds(10))
            let body = try await response.body.collect(upTo: Self.maximumBytes)
            guard (200..<300).contains(response.status.code) else {
                return .failure(
                    SourceError(message: "Failed to download file from \(url). \(response.status.code): \(response.status.reasonPhrase)")
                )
            }
            return Self.measure(Array(buffer: body), src: url)
        } catch {
            return .failure(SourceError(message: "Failed to download file from \(url). \(error)"))
        }
    }

    private static func measure(_ bytes: [UInt8], src: String) -> Result<ImageSize, SourceError> {
        guard let size = ImageHeader.size(of: bytes) else {
            return .failure(SourceError(message: "Failed to load image at \(src), are you sure it is accessible and an image?"))
        }
        return .success(size)
    }
}
