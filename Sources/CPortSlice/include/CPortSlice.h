#ifndef CPORTSLICE_H
#define CPORTSLICE_H

// What Swift's Glibc overlay lacks for slice-aware sockets on Linux. Macros that Swift cannot
// import are re-exported as constants with a `cportslice_` prefix.

#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif
#ifndef IP_LOCAL_PORT_RANGE
#define IP_LOCAL_PORT_RANGE 51
#endif
#ifndef SO_COOKIE
#define SO_COOKIE 57
#endif

/// `IP_LOCAL_PORT_RANGE` (Linux 6.3): per-socket ephemeral range, level `IPPROTO_IP`.
static const int cportslice_ip_local_port_range = IP_LOCAL_PORT_RANGE;
/// `IP_BIND_ADDRESS_NO_PORT`: defer the port choice from bind() to connect().
static const int cportslice_ip_bind_address_no_port = IP_BIND_ADDRESS_NO_PORT;
/// `SO_COOKIE`: the socket's 64-bit kernel cookie, compared with sock_diag answers.
static const int cportslice_so_cookie = SO_COOKIE;

/// `SOCK_DIAG_BY_FAMILY` and `INET_DIAG_NOCOOKIE` as constants Swift can import.
static const uint16_t cportslice_sock_diag_by_family = SOCK_DIAG_BY_FAMILY;
static const uint32_t cportslice_inet_diag_nocookie = INET_DIAG_NOCOOKIE;

/// One sock_diag request as it goes on the wire: netlink header, then the inet_diag request
/// (72 bytes, no padding between them).
struct cportslice_diag_request {
    struct nlmsghdr header;
    struct inet_diag_req_v2 request;
};

/// A sock_diag answer: either an inet_diag_msg or an nlmsgerr follows the header.
struct cportslice_diag_answer {
    struct nlmsghdr header;
    union {
        struct inet_diag_msg message;
        struct nlmsgerr error;
    } body;
};

/// `setns(2)` for network namespaces: Glibc declares setns only under _GNU_SOURCE, which the
/// Swift overlay is not built with.
extern int setns(int fd, int nstype);
static inline int cportslice_enter_network_namespace(int fd) {
    return setns(fd, 0x40000000 /* CLONE_NEWNET */);
}

/// Receives up to `count` datagrams in one `recvmmsg(2)` call (Glibc declares it only under
/// _GNU_SOURCE), without waiting: message i lands at `buffer + i * slot_size` and its length
/// in `lengths[i]`. Returns how many arrived, or -1 with errno set.
int cportslice_receive_datagrams(int fd, void *buffer, unsigned int slot_size, unsigned int count, unsigned int *lengths);

/// Accepts one connection without blocking (`accept4(2)`, a GNU extension): the new
/// descriptor is non-blocking and close-on-exec, and its IPv4 peer lands in `peer`. Returns the
/// descriptor, or -1 with errno set (EAGAIN when none is waiting).
int cportslice_accept_nonblocking(int listener, struct sockaddr_in *peer);

/// The CPUs the calling thread may run on (`sched_getaffinity(2)`, whose CPU_* macros Swift
/// cannot import), in order, the first `capacity` of them written to `cpus`. Returns how many
/// there are (more than `capacity` when they did not fit), or -1 with errno set.
int cportslice_allowed_cpus(int *cpus, int capacity);

/// Keeps the calling thread on `cpu` alone (`sched_setaffinity(2)`). Returns 0, or -1 with
/// errno set (EINVAL when `cpu` is negative, past 2^20, offline or outside the process's cpuset).
int cportslice_pin_current_thread(int cpu);

/// Names the calling thread (`prctl(PR_SET_NAME)`; 15 bytes show) for `top -H` and
/// /proc/PID/task/TID/comm. Returns 0, or -1 with errno set.
int cportslice_name_current_thread(const char *name);

/// Gives the calling thread the lowest scheduling weight (nice 19; on Linux the nice value is
/// a thread's own): it runs on what the process's other threads leave of the cores. Returns
/// 0, or -1 with errno set.
int cportslice_yield_current_thread(void);

/// What the proxy engine watches on each socket, edge-triggered: readable, writable, the
/// peer's half-close, and (always reported) errors and hang-ups.
static const uint32_t cportslice_epoll_stream_events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
/// Readable, edge-triggered: wake-up eventfds.
static const uint32_t cportslice_epoll_readable_edge = EPOLLIN | EPOLLET;
/// Readable for as long as it is (level-triggered): listeners.
static const uint32_t cportslice_epoll_readable_level = EPOLLIN;
static const uint32_t cportslice_epoll_in = EPOLLIN;
static const uint32_t cportslice_epoll_out = EPOLLOUT;
/// The peer ended its sending side (half-close).
static const uint32_t cportslice_epoll_peer_closed = EPOLLRDHUP;
/// An error, or both directions gone (a failed connect, a reset).
static const uint32_t cportslice_epoll_error = EPOLLERR | EPOLLHUP;

/// Packs an inclusive port range the way `IP_LOCAL_PORT_RANGE` expects: `(hi << 16) | lo`.
static inline uint32_t cportslice_pack_port_range(uint16_t lo, uint16_t hi) {
    return ((uint32_t)hi << 16) | (uint32_t)lo;
}

#endif
