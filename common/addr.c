/* Parsing and printing of socket addresses in the ADDR@PORT form used by configs and flags. */
#include "addr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"

static int parse_port(const char *text, uint16_t *port)
{
    char *end = NULL;
    if (text[0] == '\0')
        return BALLAST_EINVAL;
    unsigned long value = strtoul(text, &end, 10);
    if (*end != '\0' || value == 0 || value > 65535)
        return BALLAST_EINVAL;
    *port = (uint16_t)value;
    return 0;
}

int addr_parse(const char *text, uint16_t default_port, struct addr *out)
{
    char host[INET6_ADDRSTRLEN + 8];
    uint16_t port = default_port;
    const char *at = strrchr(text, '@');
    size_t host_len;
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (close == NULL)
            return BALLAST_EINVAL;
        host_len = (size_t)(close - text - 1);
        if (host_len >= sizeof(host))
            return BALLAST_EINVAL;
        memcpy(host, text + 1, host_len);
        if (close[1] == ':' || close[1] == '@') {
            if (parse_port(close + 2, &port) != 0)
                return BALLAST_EINVAL;
        } else if (close[1] != '\0') {
            return BALLAST_EINVAL;
        }
    } else {
        host_len = at ? (size_t)(at - text) : strlen(text);
        if (host_len >= sizeof(host))
            return BALLAST_EINVAL;
        memcpy(host, text, host_len);
        if (at != NULL && parse_port(at + 1, &port) != 0)
            return BALLAST_EINVAL;
    }
    host[host_len] = '\0';
    memset(out, 0, sizeof(*out));
    struct sockaddr_in *v4 = (struct sockaddr_in *)&out->ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&out->ss;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        out->len = sizeof(*v4);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        out->len = sizeof(*v6);
        return 0;
    }
    return BALLAST_EINVAL;
}

const char *addr_format(const struct sockaddr *sa, char *buf, size_t buf_len)
{
    char host[INET6_ADDRSTRLEN];
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &v4->sin_addr, host, sizeof(host));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &v6->sin6_addr, host, sizeof(host));
    } else {
        snprintf(buf, buf_len, "unknown");
        return buf;
    }
    snprintf(buf, buf_len, "%s@%u", host, addr_port(sa));
    return buf;
}

uint16_t addr_port(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)sa)->sin_port);
    if (sa->sa_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    return 0;
}
