/* Default values for struct limits. */
#include "limit.h"

void limits_init_defaults(struct limits *limits)
{
    limits->max_zone_records = LIMIT_DEFAULT_MAX_ZONE_RECORDS;
    limits->max_zone_bytes = LIMIT_DEFAULT_MAX_ZONE_BYTES;
    limits->max_rrset_records = LIMIT_DEFAULT_MAX_RRSET_RECORDS;
    limits->max_include_depth = LIMIT_DEFAULT_MAX_INCLUDE_DEPTH;
    limits->max_zones = LIMIT_DEFAULT_MAX_ZONES;
    limits->tcp_clients = LIMIT_DEFAULT_TCP_CLIENTS;
    limits->tcp_idle_timeout_ms = LIMIT_DEFAULT_TCP_IDLE_TIMEOUT_MS;
    limits->tcp_pipeline = LIMIT_DEFAULT_TCP_PIPELINE;
    limits->edns_udp_size = LIMIT_DEFAULT_EDNS_UDP_SIZE;
    limits->cname_chain = LIMIT_DEFAULT_CNAME_CHAIN;
}
