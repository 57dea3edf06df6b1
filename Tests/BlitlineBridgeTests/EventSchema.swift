import Blitline
import Foundation

/// `deploy/schema/event.schema.json`, the JSON Schema shipped for the events' consumers, and a
/// checker for the part of JSON Schema it uses (`$ref` into `$defs`, `type`, `const`, `enum`,
/// `required`, `properties`, `additionalProperties: false`, `items`, `minLength`). A keyword it
/// does not know fails the check, so that the schema cannot say more than the tests verify.
enum EventSchema {
    static let schema: JSONValue = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("deploy/schema/event.schema.json")
        do {
            return try JSONValue(parsing: Array(try Data(contentsOf: url)))
        } catch {
            fatalError("deploy/schema/event.schema.json cannot be read: \(error)")
        }
    }()

    /// What in `event` the schema does not allow, one line each; empty when it conforms.
    static func violations(of event: JSONValue) -> [String] {
        check(event, against: schema, at: "event")
    }

    private static let annotations: Set<String> = ["$schema", "$id", "title", "description", "$defs"]

    private static func check(_ value: JSONValue, against schema: JSONValue, at path: String) -> [String] {
        guard let keywords = schema.objectMembers else { return ["\(path): the schema there is not an object"] }
        var problems: [String] = []
        for keyword in keywords {
            let rule = keyword.value
            switch keyword.key {
            case "$ref":
                guard let reference = rule.stringValue, reference.hasPrefix("#/$defs/"),
                    let target = Self.schema["$defs"]?[String(reference.dropFirst(8))]
                else {
                    problems.append("\(path): unknown $ref \(rule)")
                    continue
                }
                problems += check(value, against: target, at: path)
            case "type":
                let allowed = rule.arrayValue?.compactMap(\.stringValue) ?? rule.stringValue.map { [$0] } ?? []
                if !allowed.contains(typeName(value)) {
                    problems.append("\(path): \(typeName(value)) where \(allowed.joined(separator: " or ")) is allowed")
                }
            case "const":
                if value != rule { problems.append("\(path): \(value) is not \(rule)") }
            case "enum":
                if !(rule.arrayValue ?? []).contains(value) { problems.append("\(path): \(value) is none of \(rule)") }
            case "minLength":
                if let string = value.stringValue, let minimum = rule.intValue, string.count < minimum {
                    problems.append("\(path): shorter than \(minimum)")
                }
            case "required":
                guard value.objectMembers != nil else { continue }
                for key in rule.arrayValue?.compactMap(\.stringValue) ?? [] where value[key] == nil {
                    problems.append("\(path).\(key) is missing")
                }
            case "properties":
                for member in value.objectMembers ?? [] {
                    if let property = rule[member.key] { problems += check(member.value, against: property, at: "\(path).\(member.key)") }
                }
            case "additionalProperties":
                guard rule == .bool(false) else {
                    problems.append("\(path): only additionalProperties false is checked")
                    continue
                }
                let known = Set(schema["properties"]?.objectMembers?.map(\.key) ?? [])
                for member in value.objectMembers ?? [] where !known.contains(member.key) {
                    problems.append("\(path).\(member.key) is not in the schema")
                }
            case "items":
                for (index, element) in (value.arrayValue ?? []).enumerated() {
                    problems += check(element, against: rule, at: "\(path)[\(index)]")
                }
            case let other where annotations.contains(other):
                continue
            case let other:
                problems.append("\(path): the checker does not know the keyword \(other)")
            }
        }
        return problems
    }

    private static func typeName(_ value: JSONValue) -> String {
        switch value {
        case .null: "null"
        case .bool: "boolean"
        case .number: "number"
        case .string: "string"
        case .array: "array"
        case .object: "object"
        }
    }
}

import Testing
@testable import BlitlineBridge

@Suite struct EventSchemaTests {
    static let context = RequestEnvelope(requestID: "r1", correlationID: "c1", replyTo: nil, traceparent: nil)

    @Test func theBridgesEventsFollowTheShippedSchemaAndOthersDoNot() throws {
        let timeout = JobEvent.failure(Self.context, reason: .timeout, message: "no result", jobID: "j1").json
        #expect(EventSchema.violations(of: timeout).isEmpty, "\(EventSchema.violations(of: timeout))")
        let result = try JobResult.decode(
            postbackBody: Array(#"{"results":{"job_id":"j1","images":[{"image_identifier":"a","s3_url":"https://x/a.jpg","meta":{"width":4,"height":3}}],"original_meta":{"width":8,"height":6}}}"#.utf8),
            contentType: "application/json")
        let completed = JobEvent.result(result, context: Self.context, via: .postback, late: true).json
        #expect(EventSchema.violations(of: completed).isEmpty, "\(EventSchema.violations(of: completed))")

        var broken = completed
        broken["data"]?["job_id"] = .number("7")
        broken["data"]?["extra"] = .string("x")
        broken["type"] = .string("blitline.job.done")
        let violations = EventSchema.violations(of: broken)
        #expect(violations.count == 3, "\(violations)")
    }
}
