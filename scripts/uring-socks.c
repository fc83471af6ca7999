/*
 * An experiment, not part of portslice: the least a SOCKS5 CONNECT proxy can do per
 * connection on io_uring (liburing), to learn whether io_uring's fewer kernel crossings would
 * lift portslice's one-client connection rate above microsocks' (issue 12). One thread, one
 * ring: multishot accept, the greeting and the request read by `recv` submissions, the dial
 * (socket, SO_REUSEADDR, bind to 127.0.0.2 and a port of its own, as portslice's slice dial
 * does) connected by a `connect` submission, the reply sent, then both sides read until one
 * ends. No authentication, no limits, IPv4 addresses only: what `bench proxy` asks of it.
 *
 * Measured in `bench proxy`'s own harness in place of microsocks, through a private mount
 * namespace so the installed microsocks is untouched (its rows are labelled "microsocks"):
 *
 *     sudo apt-get install liburing-dev
 *     gcc -O2 -o /tmp/uring-socks scripts/uring-socks.c -luring
 *     sudo unshare -m sh -c 'mount --bind /tmp/uring-socks /usr/bin/microsocks &&
 *         .build/release/portslice bench proxy --seconds 3 --held 0 --no-pin-loops --only portslice --only microsocks'
 *
 * The README's figures were measured against portslice's loops left to the scheduler (as they
 * all were then), hence --no-pin-loops. URING_SOCKS_RING picks the ring (the benchmark passes
 * its environment on): `defer` (the default: completions run when the thread waits), `plain`,
 * or `sqpoll` (a kernel thread polls the submissions).
 */
#include <liburing.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

// What a completion is for; with the client's descriptor and the connection's generation, its user data.
enum { OP_ACCEPT = 1, OP_RECV_C, OP_SEND_METHOD, OP_RECV_REQ, OP_CONNECT, OP_SEND_REPLY, OP_RELAY_C, OP_RELAY_U };
#define MAXFD 65536
// One client connection, by the client's descriptor: its upstream, a buffer per direction
// (client half, upstream half), and how many of its two relay reads have ended.
struct conn { unsigned gen; int up; unsigned char buf[8192]; struct sockaddr_in dst; int closing; };
static struct conn *conns[MAXFD];
static struct io_uring ring;
static int listener;
static unsigned next_port = 20000;

static struct io_uring_sqe *sqe(void) {
    struct io_uring_sqe *s = io_uring_get_sqe(&ring);
    if (!s) { io_uring_submit(&ring); s = io_uring_get_sqe(&ring); }
    return s;
}
static unsigned gens;
static unsigned long long ud(int fd, int op) { unsigned g = conns[fd] ? conns[fd]->gen : 0; return ((unsigned long long)g << 32) | ((unsigned long long)fd << 8) | op; }
static void recv_on(int fd, int op, void *buf, int len) { struct io_uring_sqe *s = sqe(); io_uring_prep_recv(s, fd, buf, len, 0); io_uring_sqe_set_data64(s, ud(fd, op)); }
static void send_on(int fd, int op, const void *buf, int len) { struct io_uring_sqe *s = sqe(); io_uring_prep_send(s, fd, buf, len, MSG_NOSIGNAL); io_uring_sqe_set_data64(s, ud(fd, op)); }
static void arm_accept(void) { struct io_uring_sqe *s = sqe(); io_uring_prep_multishot_accept(s, listener, NULL, NULL, SOCK_CLOEXEC); io_uring_sqe_set_data64(s, ud(listener, OP_ACCEPT)); }

static void finish(int c) {
    struct conn *k = conns[c]; if (!k) return;
    if (k->up >= 0) { shutdown(k->up, SHUT_RDWR); close(k->up); }
    shutdown(c, SHUT_RDWR); close(c); conns[c] = NULL; free(k);
}

int main(int argc, char **argv) {
    const char *ip = "127.0.0.1"; int port = 1080;
    for (int i = 1; i + 1 < argc; i++) { if (!strcmp(argv[i], "-i")) ip = argv[++i]; else if (!strcmp(argv[i], "-p")) port = atoi(argv[++i]); }
    listener = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1; setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(listener, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) }; inet_pton(AF_INET, ip, &a.sin_addr);
    if (bind(listener, (void *)&a, sizeof a) || listen(listener, 4096)) { perror("listen"); return 1; }
    // By default completions are run by this thread when it waits, not by interrupting it (the
    // variant that measured best: plain rings cost 90 us per connection, SQPOLL 203 us).
    const char *ring_kind = getenv("URING_SOCKS_RING");
    struct io_uring_params p = { .flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN };
    if (ring_kind && !strcmp(ring_kind, "plain")) { p.flags = 0; }
    else if (ring_kind && !strcmp(ring_kind, "sqpoll")) { p.flags = IORING_SETUP_SQPOLL; p.sq_thread_idle = 2; }
    else if (ring_kind && strcmp(ring_kind, "defer")) { fprintf(stderr, "URING_SOCKS_RING=%s: give defer, plain or sqpoll\n", ring_kind); return 2; }
    if (io_uring_queue_init_params(4096, &ring, &p)) { p.flags = 0; if (io_uring_queue_init_params(4096, &ring, &p)) { perror("uring"); return 1; } }
    arm_accept();
    static const unsigned char method[2] = {5, 0};
    for (;;) {
        io_uring_submit_and_wait(&ring, 1);
        struct io_uring_cqe *cqe; unsigned head, n = 0;
        io_uring_for_each_cqe(&ring, head, cqe) {
            n++;
            int fd = (int)((cqe->user_data >> 8) & 0xffffff), op = (int)(cqe->user_data & 0xff), res = cqe->res;
            if (op == OP_ACCEPT) {
                if (!(cqe->flags & IORING_CQE_F_MORE)) arm_accept();
                if (res < 0) continue;
                struct conn *k = calloc(1, sizeof *k); k->up = -1; k->gen = ++gens; conns[res] = k;
                recv_on(res, OP_RECV_C, k->buf, 262);
                continue;
            }
            struct conn *k = conns[fd];
            if (!k || k->gen != (unsigned)(cqe->user_data >> 32)) continue; // a finished connection's late completion
            switch (op) {
            case OP_RECV_C:
                if (res < 3 || k->buf[0] != 5) { finish(fd); break; }
                send_on(fd, OP_SEND_METHOD, method, 2);
                recv_on(fd, OP_RECV_REQ, k->buf, 262);
                break;
            case OP_SEND_METHOD: if (res < 0) finish(fd); break;
            case OP_RECV_REQ: {
                if (res < 10 || k->buf[1] != 1 || k->buf[3] != 1) { finish(fd); break; }
                k->dst.sin_family = AF_INET; memcpy(&k->dst.sin_addr, k->buf + 4, 4); memcpy(&k->dst.sin_port, k->buf + 8, 2);
                int u = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
                setsockopt(u, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
                struct sockaddr_in src = { .sin_family = AF_INET, .sin_port = htons(next_port) }; inet_pton(AF_INET, "127.0.0.2", &src.sin_addr);
                next_port = next_port >= 60000 ? 20000 : next_port + 1;
                if (bind(u, (void *)&src, sizeof src)) { close(u); finish(fd); break; }
                k->up = u;
                struct io_uring_sqe *s = sqe(); io_uring_prep_connect(s, u, (void *)&k->dst, sizeof k->dst); io_uring_sqe_set_data64(s, ud(fd, OP_CONNECT));
                break;
            }
            case OP_CONNECT: {
                static const unsigned char ok[10] = {5, 0, 0, 1, 0, 0, 0, 0, 0, 0};
                if (res < 0) { finish(fd); break; }
                send_on(fd, OP_SEND_REPLY, ok, 10);
                recv_on(fd, OP_RELAY_C, k->buf, 4096);
                // upstream reads go to the second half of the buffer; keyed by the client's fd
                { struct io_uring_sqe *s = sqe(); io_uring_prep_recv(s, k->up, k->buf + 4096, 4096, 0); io_uring_sqe_set_data64(s, ud(fd, OP_RELAY_U)); }
                break;
            }
            case OP_SEND_REPLY: if (res < 0) k->closing = 1; break;
            case OP_RELAY_C: case OP_RELAY_U:
                if (res <= 0) { if (k->closing++) finish(fd); else { shutdown(k->up, SHUT_RDWR); shutdown(fd, SHUT_RDWR); } break; }
                // data: forward (the benchmark's connection rows send none after the reply)
                if (op == OP_RELAY_C) { send(k->up, k->buf, res, MSG_NOSIGNAL); recv_on(fd, OP_RELAY_C, k->buf, 4096); }
                else { send(fd, k->buf + 4096, res, MSG_NOSIGNAL); struct io_uring_sqe *s = sqe(); io_uring_prep_recv(s, k->up, k->buf + 4096, 4096, 0); io_uring_sqe_set_data64(s, ud(fd, OP_RELAY_U)); }
                break;
            }
        }
        io_uring_cq_advance(&ring, n);
    }
}
