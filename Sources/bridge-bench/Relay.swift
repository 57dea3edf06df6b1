import AMQP
import Foundation

/// What a relay driven by the AMQP module alone does with each request, besides consuming it,
/// publishing its event to the collector and acknowledging it: what any worker that turns requests
/// into events costs the broker. The bridge's own pattern adds an outcome record in the outcomes
/// stream per batch of events and a deadline message per batch of jobs.
struct RelayPattern: CustomStringConvertible {
    /// One outcome record (the batch's request ids) in a stream per this many events.
    var jobsPerRecord: Int?
    /// One persistent deadline message per this many requests.
    var jobsPerDeadline: Int?

    static let plain = RelayPattern()

    var description: String {
        switch (jobsPerRecord, jobsPerDeadline) {
        case (nil, nil): "a plain relay"
        case (let records?, nil): "a plain relay plus an outcome record per \(records) events"
        case (nil, let jobs?): "a plain relay plus a deadline message per \(jobs) jobs"
        case (let records?, let jobs?): "a plain relay plus an outcome record per \(records) events and a deadline message per \(jobs) jobs"
        }
    }
}

struct RelayRun {
    let seconds: Double
    let brokerCPU: Double?
}

/// Relays `count` requests from a queue of their own into `exchange` on its own connections, at
/// most `prefetch` at once, and, when `pace` is given, no faster than `pace.perSecond` requests
/// per second, released `pace.burst` at a time (so that the broker's work per job is compared at
/// the bridge's own rate and burst size: a broker that is driven harder, or in larger bursts,
/// batches more per wake-up and spends less per message).
func relay(
    _ pattern: RelayPattern, count: Int, prefetch: Int, pace: (perSecond: Double, burst: Int)?, queueKind: AMQPTable, exchange: String,
    eventsQueue: String, run: String, nodes: AMQPEndpoints, admin: AMQPChannel, collector: AMQPChannel, broker: [Int32]
) async throws -> RelayRun {
    let jobs = "\(run).relay.jobs", deadlines = "\(run).relay.deadlines", stream = "\(run).relay.stream"
    try await admin.declareQueue(jobs, durable: true, arguments: queueKind)
    if pattern.jobsPerDeadline != nil { try await admin.declareQueue(deadlines, durable: true, arguments: queueKind) }
    if pattern.jobsPerRecord != nil {
        try await admin.declareQueue(stream, durable: true, arguments: ["x-queue-type": .string("stream")])
    }
    try await admin.purgeQueue(eventsQueue)
    try await publishRequests(admin, queue: jobs, count: count)
    let worker = try await AMQPConnection.connect(nodes.configurations[0])
    let publisher = try await AMQPConnection.connect(nodes.configurations[0])
    let publishing = try await publisher.openChannel()
    try await publishing.enableConfirms()
    let started = ContinuousClock.now
    let brokerCPUBefore = brokerCPUSeconds(broker)
    let workerTask = Task {
        let consuming = try await worker.openChannel()
        try await withThrowingDiscardingTaskGroup { group in
            var handled = 0
            for try await delivery in try await consuming.consume(queue: jobs, prefetch: UInt16(prefetch)) {
                handled += 1
                let index = handled
                group.addTask {
                    if let pace {
                        let slot = (index - 1) / pace.burst * pace.burst
                        try await Task.sleep(until: started + .seconds(Double(slot) / pace.perSecond))
                    }
                    let id = delivery.properties.messageID ?? ""
                    if let jobsPerDeadline = pattern.jobsPerDeadline, index % jobsPerDeadline == 1 % jobsPerDeadline {
                        try await publishing.publish(
                            delivery.body, routingKey: deadlines,
                            properties: AMQPProperties(deliveryMode: 2, expiration: "1800000", messageID: id + "/deadline"))
                    }
                    try await publishing.publish(
                        delivery.body, exchange: exchange, routingKey: "job.completed",
                        properties: AMQPProperties(
                            contentType: "application/cloudevents+json", deliveryMode: 2, messageID: id + "/completed"))
                    if let jobsPerRecord = pattern.jobsPerRecord, index % jobsPerRecord == 0 || index == count {
                        let message = outcomeRecord((max(1, index - jobsPerRecord + 1)...index).map { "request-\($0)" })
                        try await publishing.publish(message.body, routingKey: stream, properties: message.properties)
                    }
                    delivery.ack()
                }
                if index == count { break }
            }
        }
    }
    let (last, _, _) = try await collectEvents(collector, queue: eventsQueue, count: count)
    try await workerTask.value
    let brokerCPU = brokerCPUSeconds(broker).flatMap { after in brokerCPUBefore.map { after - $0 } }
    await worker.close()
    await publisher.close()
    for queue in [jobs, deadlines, stream] { _ = try? await admin.deleteQueue(queue) }
    return RelayRun(seconds: seconds(last - started), brokerCPU: brokerCPU)
}
