// The AMQP benchmark's workloads driven by librabbitmq directly, as the yardstick for the Swift
// wrapper: publish persistent messages with windowed confirms, then consume them with manual
// multi-acks. Run by amqp-bench; prints "c publish: N msg/s" and "c consume: N msg/s".
//
// usage: amqp-bench-c URL QUEUE COUNT SIZE WINDOW PREFETCH
#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <time.h>

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu_seconds(void) {
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    return usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6 + usage.ru_stime.tv_sec +
           usage.ru_stime.tv_usec / 1e6;
}

static void die_on_reply(amqp_rpc_reply_t reply, const char *what) {
    if (reply.reply_type == AMQP_RESPONSE_NORMAL) return;
    fprintf(stderr, "amqp-bench-c: %s failed (reply type %d, library error %s)\n", what,
            reply.reply_type, amqp_error_string2(reply.library_error));
    exit(1);
}

static amqp_connection_state_t connect_to(const char *url) {
    struct amqp_connection_info info;
    char *copy = strdup(url);  // amqp_parse_url writes into its argument
    if (amqp_parse_url(copy, &info) != AMQP_STATUS_OK) {
        fprintf(stderr, "amqp-bench-c: cannot parse %s\n", url);
        exit(2);
    }
    amqp_connection_state_t conn = amqp_new_connection();
    amqp_socket_t *socket = amqp_tcp_socket_new(conn);
    if (amqp_socket_open(socket, info.host, info.port) != AMQP_STATUS_OK) {
        fprintf(stderr, "amqp-bench-c: cannot connect to %s:%d\n", info.host, info.port);
        exit(1);
    }
    die_on_reply(amqp_login(conn, info.vhost, 0, AMQP_DEFAULT_FRAME_SIZE, 30,
                            AMQP_SASL_METHOD_PLAIN, info.user, info.password), "login");
    amqp_channel_open(conn, 1);
    die_on_reply(amqp_get_rpc_reply(conn), "channel.open");
    free(copy);
    return conn;
}

static double publish(const char *url, const char *queue, long count, size_t size, long window) {
    amqp_connection_state_t conn = connect_to(url);
    amqp_confirm_select(conn, 1);
    die_on_reply(amqp_get_rpc_reply(conn), "confirm.select");

    char *body = malloc(size);
    memset(body, 'x', size);
    amqp_bytes_t message = {size, body};
    amqp_basic_properties_t props;
    props._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG;
    props.content_type = amqp_cstring_bytes("application/octet-stream");
    props.delivery_mode = AMQP_DELIVERY_PERSISTENT;

    long published = 0, confirmed = 0;
    double start = now_seconds();
    while (confirmed < count) {
        while (published < count && published - confirmed < window) {
            if (amqp_basic_publish(conn, 1, amqp_empty_bytes, amqp_cstring_bytes(queue), 0, 0,
                                   &props, message) != AMQP_STATUS_OK) {
                fprintf(stderr, "amqp-bench-c: publish failed\n");
                exit(1);
            }
            published++;
        }
        amqp_frame_t frame;
        struct timeval timeout = {0, 0};
        struct timeval wait = {1, 0};
        int full = published - confirmed >= window || published == count;
        int status = amqp_simple_wait_frame_noblock(conn, &frame, full ? &wait : &timeout);
        if (status == AMQP_STATUS_TIMEOUT) continue;
        if (status != AMQP_STATUS_OK) {
            fprintf(stderr, "amqp-bench-c: reading confirms failed: %s\n", amqp_error_string2(status));
            exit(1);
        }
        if (frame.frame_type == AMQP_FRAME_METHOD && frame.payload.method.id == AMQP_BASIC_ACK_METHOD) {
            amqp_basic_ack_t *ack = frame.payload.method.decoded;
            // Confirms on one channel arrive in order: a multiple ack settles everything up to it.
            confirmed = ack->multiple ? (long)ack->delivery_tag : confirmed + 1;
        }
        amqp_maybe_release_buffers(conn);
    }
    double elapsed = now_seconds() - start;
    free(body);
    amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(conn);
    return count / elapsed;
}

static double consume(const char *url, const char *queue, long count, int prefetch) {
    amqp_connection_state_t conn = connect_to(url);
    amqp_basic_qos(conn, 1, 0, prefetch, 0);
    die_on_reply(amqp_get_rpc_reply(conn), "basic.qos");
    amqp_basic_consume(conn, 1, amqp_cstring_bytes(queue), amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
    die_on_reply(amqp_get_rpc_reply(conn), "basic.consume");

    long received = 0;
    double start = now_seconds();
    while (received < count) {
        amqp_envelope_t envelope;
        amqp_maybe_release_buffers(conn);
        amqp_rpc_reply_t reply = amqp_consume_message(conn, &envelope, NULL, 0);
        die_on_reply(reply, "consume");
        received++;
        if (received % 50 == 0 || received == count) {
            amqp_basic_ack(conn, envelope.channel, envelope.delivery_tag, 1);
        }
        amqp_destroy_envelope(&envelope);
    }
    double elapsed = now_seconds() - start;
    amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(conn);
    return count / elapsed;
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: amqp-bench-c URL QUEUE COUNT SIZE WINDOW PREFETCH\n");
        return 2;
    }
    const char *url = argv[1], *queue = argv[2];
    long count = atol(argv[3]), window = atol(argv[5]);
    size_t size = (size_t)atol(argv[4]);
    int prefetch = atoi(argv[6]);
    double cpu = cpu_seconds();
    double published = publish(url, queue, count, size, window);
    double publish_cpu = cpu_seconds() - cpu;
    cpu = cpu_seconds();
    double consumed = consume(url, queue, count, prefetch);
    double consume_cpu = cpu_seconds() - cpu;
    printf("c publish: %.0f msg/s %.2f us-cpu/msg\n", published, publish_cpu * 1e6 / count);
    printf("c consume: %.0f msg/s %.2f us-cpu/msg\n", consumed, consume_cpu * 1e6 / count);
    return 0;
}
