import CRabbitMQ

extension ConnectionLoop {
    /// Opens the socket (TLS if configured), logs in and sets timeouts. Owner thread.
    func open() throws(AMQPError) {
        guard let state = amqp_new_connection() else {
            throw AMQPError(.connectionFailed, "out of memory creating the connection")
        }
        self.state = state
        var connectTimeout = timeval(configuration.connectTimeout)
        amqp_set_handshake_timeout(state, &connectTimeout)

        let socket = try makeSocket(state)
        let opened = amqp_socket_open_noblock(
            socket, configuration.host, Int32(configuration.port), &connectTimeout)
        guard opened == AMQP_STATUS_OK.rawValue else {
            let code: AMQPError.Code = Self.isTLSStatus(opened) ? .tlsFailed : .connectionFailed
            throw AMQPError(
                code, "cannot connect to \(configuration.host):\(configuration.port): \(Self.statusText(opened))")
        }

        arena.reset()
        defer { arena.reset() }
        var properties = clientProperties().cTable(in: arena)
        let reply = crmq_login_plain(
            state, configuration.virtualHost, Int32(configuration.channelMax),
            Int32(configuration.frameMax), Int32(configuration.heartbeat.components.seconds),
            &properties, configuration.username, configuration.password)
        try checkLogin(reply)

        var rpcTimeout = timeval(configuration.rpcTimeout)
        amqp_set_rpc_timeout(state, &rpcTimeout)
        setNegotiated(heartbeat: amqp_get_heartbeat(state), frameMax: amqp_get_frame_max(state))
        if Self.stackSize(frameMax: configuration.frameMax) < 20 * frameMax {
            logger.warning(
                "AMQP frame_max is larger than the connection thread's stack covers for deeply nested headers",
                metadata: ["frameMax": "\(frameMax)"])
        }
        logger.debug(
            "AMQP connection open",
            metadata: ["broker": "\(configuration)", "heartbeat": "\(heartbeat)", "frameMax": "\(frameMax)"])
    }

    private func makeSocket(_ state: amqp_connection_state_t) throws(AMQPError) -> OpaquePointer {
        guard let tls = configuration.tls else {
            guard let socket = amqp_tcp_socket_new(state) else {
                throw AMQPError(.connectionFailed, "cannot create a TCP socket")
            }
            return socket
        }
        guard let socket = amqp_ssl_socket_new(state) else {
            throw AMQPError(.tlsFailed, "cannot create a TLS socket")
        }
        amqp_ssl_socket_set_verify_peer(socket, tls.verifyPeer ? 1 : 0)
        amqp_ssl_socket_set_verify_hostname(socket, tls.verifyHostname ? 1 : 0)
        _ = amqp_ssl_socket_set_ssl_versions(socket, AMQP_TLSv1_2, AMQP_TLSvLATEST)
        if tls.verifyPeer {
            guard let caFile = tls.caFile ?? AMQPConnection.Configuration.TLS.systemCABundle() else {
                throw AMQPError(.tlsFailed, "no CA file to verify the broker with: name one (AMQP_CA_FILE, cacertfile)")
            }
            let status = amqp_ssl_socket_set_cacert(socket, caFile)
            guard status == AMQP_STATUS_OK.rawValue else {
                throw AMQPError(.tlsFailed, "cannot load the CA file \(caFile): \(Self.statusText(status))")
            }
        }
        if let certificate = tls.certificateFile, let key = tls.keyFile {
            let status = amqp_ssl_socket_set_key(socket, certificate, key)
            guard status == AMQP_STATUS_OK.rawValue else {
                throw AMQPError(.tlsFailed, "cannot load the client certificate: \(Self.statusText(status))")
            }
        }
        return socket
    }

    private func clientProperties() -> AMQPTable {
        var table: AMQPTable = [
            "product": .string("blitline-bridge AMQP (librabbitmq \(String(cString: amqp_version())))"),
            "capabilities": .table([
                "connection.blocked": .bool(true),
                "consumer_cancel_notify": .bool(true),
                "publisher_confirms": .bool(true),
                "basic.nack": .bool(true),
                "authentication_failure_close": .bool(true),
            ]),
        ]
        for (key, value) in configuration.clientProperties { table[key] = .string(value) }
        if let name = configuration.connectionName { table["connection_name"] = .string(name) }
        return table
    }

    private func checkLogin(_ reply: amqp_rpc_reply_t) throws(AMQPError) {
        switch reply.reply_type {
        case AMQP_RESPONSE_NORMAL:
            return
        case AMQP_RESPONSE_SERVER_EXCEPTION where reply.reply.id == AMQP_CONNECTION_CLOSE_METHOD:
            let close = reply.reply.decoded!.assumingMemoryBound(to: amqp_connection_close_t.self).pointee
            throw AMQPError(
                close.reply_code == 403 || close.reply_code == 530 ? .loginRefused : .connectionFailed,
                replyCode: close.reply_code, String(amqpBytes: close.reply_text))
        case AMQP_RESPONSE_LIBRARY_EXCEPTION:
            throw AMQPError(
                .connectionFailed, "login to \(configuration) failed: \(Self.statusText(reply.library_error))")
        default:
            throw AMQPError(.connectionFailed, "login to \(configuration) failed")
        }
    }

    static func statusText(_ status: Int32) -> String {
        String(cString: amqp_error_string2(status))
    }

    static func isTLSStatus(_ status: Int32) -> Bool {
        status <= AMQP_STATUS_SSL_ERROR.rawValue && status > AMQP_STATUS_SSL_ERROR.rawValue - 0x100
    }

    /// The error for a failed library call on an open connection.
    func libraryError(_ status: Int32, while doing: String) -> AMQPError {
        let code: AMQPError.Code =
            status == AMQP_STATUS_HEARTBEAT_TIMEOUT.rawValue ? .heartbeatTimeout
            : Self.isTLSStatus(status) ? .tlsFailed : .connectionClosed
        return AMQPError(code, "\(Self.statusText(status)) while \(doing)")
    }
}

extension timeval {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self.init(tv_sec: Int(seconds), tv_usec: Int(attoseconds / 1_000_000_000_000))
    }
}
