/* Socket addresses as users write them: "127.0.0.1@5301", "::1@53", "10.0.0.1" (default port). */
#ifndef BALLAST_ADDR_H
#define BALLAST_ADDR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct addr {
    struct sockaddr_storage ss;
    socklen_t len;
};

/* Parse "ADDR[@PORT]" (also "[v6]:PORT"); returns 0 or BALLAST_EINVAL. */
int addr_parse(const char *text, uint16_t default_port, struct addr *out);
/* Format as "ADDR@PORT" into buf; returns buf. */
const char *addr_format(const struct sockaddr *sa, char *buf, size_t buf_len);
uint16_t addr_port(const struct sockaddr *sa);

#endif
