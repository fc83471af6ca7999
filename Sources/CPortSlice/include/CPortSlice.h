#ifndef CPORTSLICE_H
#define CPORTSLICE_H

// What Swift's Glibc overlay lacks for slice-aware sockets on Linux. Macros that Swift cannot
// import are re-exported as constants with a `cportslice_` prefix.

#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <stdint.h>

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

/// Packs an inclusive port range the way `IP_LOCAL_PORT_RANGE` expects: `(hi << 16) | lo`.
static inline uint32_t cportslice_pack_port_range(uint16_t lo, uint16_t hi) {
    return ((uint32_t)hi << 16) | (uint32_t)lo;
}

#endif
