#ifndef CRABBITMQ_SHIM_H
#define CRABBITMQ_SHIM_H

// amqp.h uses struct timeval without including it.
#include <sys/time.h>
#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>
#include <amqp_ssl_socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>

// Swift cannot call C variadic functions: amqp_login_with_properties is wrapped here with the
// SASL PLAIN arguments spelled out.
static inline amqp_rpc_reply_t crmq_login_plain(amqp_connection_state_t state,
                                                const char *vhost,
                                                int channel_max,
                                                int frame_max,
                                                int heartbeat,
                                                const amqp_table_t *properties,
                                                const char *user,
                                                const char *password) {
    return amqp_login_with_properties(state, vhost, channel_max, frame_max, heartbeat, properties,
                                      AMQP_SASL_METHOD_PLAIN, user, password);
}

// The same with SASL EXTERNAL, for TLS client certificates.
static inline amqp_rpc_reply_t crmq_login_external(amqp_connection_state_t state,
                                                   const char *vhost,
                                                   int channel_max,
                                                   int frame_max,
                                                   int heartbeat,
                                                   const amqp_table_t *properties,
                                                   const char *identity) {
    return amqp_login_with_properties(state, vhost, channel_max, frame_max, heartbeat, properties,
                                      AMQP_SASL_METHOD_EXTERNAL, identity);
}

// TCP_CORK on or off: while on, the kernel holds partial segments, so that many small frames
// written one after another leave as few full ones; turning it off sends what is held at once.
static inline int crmq_set_cork(int fd, int on) {
    return setsockopt(fd, IPPROTO_TCP, TCP_CORK, &on, sizeof on);
}

// Names the calling thread as `top -H`, `ps -L` and `perf` show it; Linux keeps the first 15
// bytes. (prctl is variadic too.)
static inline int crmq_name_thread(const char *name) {
    return prctl(PR_SET_NAME, name, 0, 0, 0);
}

// Bytes received on the socket and not read yet, or -1. (ioctl is variadic.)
static inline int crmq_bytes_unread(int fd) {
    int count = 0;
    return ioctl(fd, FIONREAD, &count) == 0 ? count : -1;
}

#endif
