import Blitline

/// Where Blitline would store a `save`: the result field's name and its URL.
enum Destination {
    static func url(for save: JSONValue, identifier: String, jobID: String, job: JSONValue) -> (key: String, url: String) {
        if let s3 = save["s3_destination"], let key = s3["key"]?.stringValue {
            switch s3["bucket"] {
            case .string(let bucket):
                return ("s3_url", "http://s3.amazonaws.com/\(bucket)/\(key)")
            case .object:
                let name = s3["bucket"]?["name"]?.stringValue ?? "bucket"
                let host = s3["bucket"]?["location"]?.stringValue.map { "s3-\($0).amazonaws.com" } ?? "s3.amazonaws.com"
                return ("s3_url", "http://\(host)/\(name)/\(key)")
            default:
                break
            }
        }
        if let azure = save["azure_destination"], let signature = azure["shared_access_signature"]?.stringValue {
            return ("azure_url", Self.withoutQuery(signature))
        }
        if let ftp = save["ftp_destination"] {
            let parts = ["server", "directory", "filename"].compactMap { ftp[$0]?.stringValue }.filter { !$0.isEmpty }
            return ("ftp_path", "ftp://" + parts.joined(separator: "/"))
        }
        if let signed = save["signed_destination"]?["signed_url"]?.stringValue {
            return ("s3_url", Self.withoutQuery(signed))
        }
        let fileExtension = Self.fileExtension(save: save, job: job)
        return ("s3_url", "https://s3.amazonaws.com/blitline/sim/\(jobID)/\(identifier).\(fileExtension)")
    }

    private static func fileExtension(save: JSONValue, job: JSONValue) -> String {
        if let requested = save["extension"]?.stringValue, !requested.isEmpty {
            return requested.hasPrefix(".") ? String(requested.dropFirst()) : requested
        }
        let source = (job["src"]?.stringValue ?? "").lowercased()
        return source.hasSuffix(".png") ? "png" : source.hasSuffix(".gif") ? "gif" : "jpg"
    }

    private static func withoutQuery(_ url: String) -> String {
        url.split(separator: "?", maxSplits: 1).first.map(String.init) ?? url
    }
}
