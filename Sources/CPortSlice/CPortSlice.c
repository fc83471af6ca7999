// The few libc calls that Glibc's Swift overlay cannot reach (GNU extensions).
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include "CPortSlice.h"

/// CPUs a set is sized for at most: far beyond any machine, far below overflow.
static const int cportslice_most_cpus = 1 << 20;

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
    // A set sized for the machine: the fixed cpu_set_t holds 1,024 CPUs, and the kernel refuses
    // (EINVAL) a set smaller than its own count of possible CPUs.
    for (int size = 1024; size <= cportslice_most_cpus; size *= 2) {
        cpu_set_t *set = CPU_ALLOC(size);
        if (set == NULL) { return -1; }
        size_t bytes = CPU_ALLOC_SIZE(size);
        if (sched_getaffinity(0, bytes, set) != 0) {
            int error = errno;
            CPU_FREE(set);
            if (error == EINVAL) { continue; }
            errno = error;
            return -1;
        }
        int count = 0;
        for (int cpu = 0; cpu < size; cpu++) {
            if (CPU_ISSET_S(cpu, bytes, set)) {
                if (count < capacity) { cpus[count] = cpu; }
                count++;
            }
        }
        CPU_FREE(set);
        return count;
    }
    errno = EINVAL;
    return -1;
}

int cportslice_pin_current_thread(int cpu) {
    // The same bound as the allowed CPUs are read to (and no overflow in `cpu + 1`).
    if (cpu < 0 || cpu >= cportslice_most_cpus) { errno = EINVAL; return -1; }
    cpu_set_t *set = CPU_ALLOC(cpu + 1);
    if (set == NULL) { return -1; }
    size_t bytes = CPU_ALLOC_SIZE(cpu + 1);
    CPU_ZERO_S(bytes, set);
    CPU_SET_S(cpu, bytes, set);
    int result = sched_setaffinity(0, bytes, set);
    int error = errno;
    CPU_FREE(set);
    errno = error;
    return result;
}

int cportslice_name_current_thread(const char *name) {
    return prctl(PR_SET_NAME, name, 0, 0, 0);
}

int cportslice_yield_current_thread(void) {
    return setpriority(PRIO_PROCESS, 0, 19);
}
