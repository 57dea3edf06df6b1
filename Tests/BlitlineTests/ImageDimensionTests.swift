import Blitline
import BlitlineSimulator
import Testing

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

@Suite("Simulator image sizes")
struct ImageDimensionTests {
    @Test(
        "the real size of a PNG, JPEG or GIF source drives the output sizes",
        arguments: [("png", 640, 480), ("jpg", 300, 200), ("gif", 90, 120)]
    )
    func realSource(kind: String, width: Int, height: Int) async throws {
        let bytes: [UInt8] =
            switch kind {
            case "png": TestImages.png(width: width, height: height)
            case "jpg": TestImages.jpeg(width: width, height: height)
            default: TestImages.gif(width: width, height: height)
            }
        let path = "/tmp/blitline-test-\(kind)-\(UInt32.random(in: 0...UInt32.max)).\(kind)"
        try Data(bytes).write(to: URL(filePath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        try await withSimulator { client, _ in
            let text = #"""
                {"application_id":"a","src":"file://\#(path)","v":1.22,"functions":[
                  {"name":"resize_to_fit","params":{"width":150},"save":{"image_identifier":"fit"},
                   "functions":[{"name":"crop_to_square","save":{"image_identifier":"square"}},
                                {"name":"rotate","params":{"amount":90},"save":{"image_identifier":"rotated"}}]},
                  {"name":"resize_to_fill","params":{"width":50,"height":40},"save":{"image_identifier":"fill"}},
                  {"name":"crop","params":{"width":10,"height":20,"x":0,"y":0},"save":{"image_identifier":"crop"}},
                  {"name":"pad","params":{"size":5},"save":{"image_identifier":"pad"}}]}
                """#
            guard case .accepted(let jobID, _) = await client.submit(BlitlineJob(json: try JSONValue(parsing: text))!) else {
                Issue.record("not accepted")
                return
            }
            guard case .result(let result) = await client.poll(jobID: jobID) else {
                Issue.record("no result")
                return
            }
            #expect(result.original == ImageSize(width: width, height: height))
            let fitHeight = Int((Double(height) * 150 / Double(width)).rounded())
            let sizes = Dictionary(uniqueKeysWithValues: result.images.map { ($0.imageIdentifier, ImageSize(width: $0.width!, height: $0.height!)) })
            #expect(sizes["fit"] == ImageSize(width: 150, height: fitHeight))
            #expect(sizes["square"] == ImageSize(width: min(150, fitHeight), height: min(150, fitHeight)))
            #expect(sizes["rotated"] == ImageSize(width: fitHeight, height: 150))
            #expect(sizes["fill"] == ImageSize(width: 50, height: 40))
            #expect(sizes["crop"] == ImageSize(width: 10, height: 20))
            #expect(sizes["pad"] == ImageSize(width: width + 10, height: height + 10))
        }
    }

    @Test("a remote URL gets a size derived from it, the same every time")
    func derivedSize() async throws {
        try await withSimulator { $0.pollRate = 100 } _: { client, _ in
            var originals: [ImageSize?] = []
            for _ in 0..<2 {
                guard case .accepted(let jobID, _) = await client.submit(job(src: "https://example.com/same.jpg")),
                    case .result(let result) = await client.poll(jobID: jobID)
                else {
                    Issue.record("no result")
                    return
                }
                originals.append(result.original)
            }
            #expect(originals[0] != nil && originals[0] == originals[1])
        }
    }

    @Test("a missing local file fails the job with Blitline's download message")
    func missingFile() async throws {
        try await withSimulator { client, _ in
            guard case .accepted(let jobID, _) = await client.submit(job(src: "/nonexistent/file.png")),
                case .result(let result) = await client.poll(jobID: jobID)
            else {
                Issue.record("no result")
                return
            }
            #expect(result.errors.first?.hasPrefix("Image processing failed. Failed to download file from /nonexistent/file.png") == true)
            #expect(result.failedImageIdentifiers == ["thumb"] && result.original == nil)
        }
    }
}
