/* Every size, count and time limit of Ballast: named defaults in one place, overridable by config.
 */
#ifndef BALLAST_LIMITS_H
#define BALLAST_LIMITS_H

#include <stddef.h>
#include <stdint.h>

/* Defaults. Each is documented in docs/limits.md and overridable in the config file. */
#define LIMIT_DEFAULT_MAX_ZONE_RECORDS 2000000u   /* records in one zone */
#define LIMIT_DEFAULT_MAX_ZONE_BYTES (512u << 20) /* size of a zone file plus includes */
#define LIMIT_DEFAULT_MAX_RRSET_RECORDS 4096u     /* records in one RRset */
#define LIMIT_DEFAULT_MAX_INCLUDE_DEPTH 8u        /* nested $INCLUDE */
#define LIMIT_DEFAULT_MAX_ZONES 10000u            /* zones per server */
#define LIMIT_DEFAULT_TCP_CLIENTS 1000u           /* open TCP connections per worker */
#define LIMIT_DEFAULT_TCP_IDLE_TIMEOUT_MS 10000u  /* RFC 7766 §6.2.3: idle close */
#define LIMIT_DEFAULT_TCP_PIPELINE 64u            /* queries in flight per TCP connection */
#define LIMIT_DEFAULT_EDNS_UDP_SIZE 1232u         /* our advertised/used UDP payload */
#define LIMIT_DEFAULT_CNAME_CHAIN 12u             /* CNAME hops followed in one answer */
#define LIMIT_DEFAULT_CONFIG_BYTES (16u << 20)    /* size of a config file */
#define LIMIT_DEFAULT_WORKERS_MAX 256u            /* worker threads */
#define LIMIT_DNS_MESSAGE_MAX 65535u              /* RFC 1035 TCP message ceiling */
#define LIMIT_UDP_MIN_PAYLOAD 512u                /* RFC 6891 §6.2.5: smaller means 512 */

struct limits {
    uint32_t max_zone_records;
    uint64_t max_zone_bytes;
    uint32_t max_rrset_records;
    uint32_t max_include_depth;
    uint32_t max_zones;
    uint32_t tcp_clients;
    uint32_t tcp_idle_timeout_ms;
    uint32_t tcp_pipeline;
    uint16_t edns_udp_size;
    uint32_t cname_chain;
};

/* Fill with the defaults above. */
void limits_init_defaults(struct limits *limits);

#endif
