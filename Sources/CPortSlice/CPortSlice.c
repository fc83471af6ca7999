// The few libc calls that Glibc's Swift overlay cannot reach (GNU extensions).
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include "CPortSlice.h"

int cportslice_receive_datagrams(int fd, void *buffer, unsigned int slot_size, unsigned int count, unsigned int *lengths) {
    if (count == 0 || count > 256) { return 0; }
    struct iovec vectors[count];
    struct mmsghdr messages[count];
    for (unsigned int i = 0; i < count; i++) {
        vectors[i].iov_base = (char *)buffer + (size_t)i * slot_size;
        vectors[i].iov_len = slot_size;
        messages[i] = (struct mmsghdr){ .msg_hdr = { .msg_iov = &vectors[i], .msg_iovlen = 1 } };
    }
    int received = recvmmsg(fd, messages, count, MSG_DONTWAIT, NULL);
    for (int i = 0; i < received; i++) { lengths[i] = messages[i].msg_len; }
    return received;
}

int cportslice_accept_nonblocking(int listener, struct sockaddr_in *peer) {
    socklen_t length = sizeof(*peer);
    return accept4(listener, (struct sockaddr *)peer, &length, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

int cportslice_allowed_cpus(int *cpus, int capacity) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) != 0) { return -1; }
    int count = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE && count < capacity; cpu++) {
        if (CPU_ISSET(cpu, &set)) { cpus[count++] = cpu; }
    }
    return count;
}

int cportslice_pin_current_thread(int cpu) {
    if (cpu < 0 || cpu >= CPU_SETSIZE) { errno = EINVAL; return -1; }
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(0, sizeof(set), &set);
}

int cportslice_name_current_thread(const char *name) {
    return prctl(PR_SET_NAME, name, 0, 0, 0);
}
