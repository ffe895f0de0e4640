/* `ballast replay` (see replay.h): builds a scenario's topology in a run directory — a generated
 * root zone and hints, one ballast-authd per authority (with fault injection), the endpoints as
 * TCP/HTTP listeners in this process, ballast-resolver — then drives the client load and the
 * timeline on one libuv loop, polls the resolver's upstream counters every second, and writes
 * the timeline CSV, the summary and the plot. --compare runs the scenario a second time with the
 * protections off and draws both runs. */
#include "replay.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>
#include <uv.h>

#include "control.h"
#include "errors.h"
#include "loadgen.h"
#include "replay_report.h"
#include "scenario.h"

#define REPLAY_READY_TIMEOUT_MS 15000u
#define REPLAY_CONTROL_TIMEOUT_MS 3000u
#define REPLAY_STOP_TIMEOUT_MS 10000u
#define REPLAY_MAX_WINDOWS 256
#define REPLAY_OVERSIZED_RECORDS 150000u /* a pushed oversized zone: above the limit below */
#define REPLAY_ZONE_RECORD_LIMIT 100000u /* max-zone-records of the generated authd configs */
#define REPLAY_FEED_OVERSIZED_BYTES (4u << 20)

struct replay;

/* A control command run off the loop thread (a reload of a big zone takes seconds, and the
 * client load must not stall meanwhile); jobs run one at a time, in the order they came. */
struct replay_job {
    struct replay_job *next;
    struct replay_daemon *daemon;
    char command[600];
};

/* A daemon process: the root, an authority or the resolver. */
struct replay_daemon {
    struct replay *r;
    char name[64];
    char *argv[12];
    char config_path[PATH_MAX];
    char control_path[PATH_MAX];
    char log_path[PATH_MAX];
    uv_process_t proc;
    bool spawned;       /* proc is an open handle */
    bool running;       /* the process has not exited */
    bool start_on_exit; /* restart: start again once it has exited */
    bool exited_clean;  /* the last exit was status 0 */
};

/* An endpoint health probes reach: a listener in this process. */
struct replay_endpoint {
    struct replay *r;
    const struct scenario_endpoint *cfg;
    uv_tcp_t server;
    bool open;
    enum scenario_endpoint_state state;
};

/* One accepted endpoint connection. */
struct replay_conn {
    uv_tcp_t tcp;
    uv_timer_t delay;
    struct replay_endpoint *endpoint;
    bool http;
    bool answered;
};

struct replay_options {
    double speed;
    const char *out_dir;
    const char *bin_dir;
    bool compare;
    bool protections_off; /* one run, with the protections off (to prove they matter) */
    bool quiet;
    bool check_only;
    const char *file;
};

struct replay {
    const struct scenario *s;
    const struct replay_options *opt;
    bool protections_off; /* the --compare run */
    bool unbound;         /* the --compare run with `compare: unbound`: Unbound as the resolver */
    const char *label;
    char run_dir[PATH_MAX / 2];
    char socket_dir[64]; /* control sockets: short paths (sun_path holds 108 bytes) */
    char authd_bin[PATH_MAX];
    char resolver_bin[PATH_MAX];
    char unbound_bin[PATH_MAX];
    struct addr root_addr;
    uv_loop_t loop;
    struct replay_daemon *daemons; /* [0] root, [1..n] authorities, [n+1] resolver */
    size_t daemon_count;
    struct replay_endpoint *endpoints;
    uv_timer_t event_timer;
    uv_timer_t tick_timer;
    uv_timer_t end_timer;
    size_t next_event;
    uint64_t started_ns;
    struct loadgen *lg;
    bool load_done;
    uint64_t *upstream; /* per real second */
    size_t upstream_cap;
    uint64_t last_upstream_total;
    bool have_upstream_total;
    struct replay_window windows[REPLAY_MAX_WINDOWS];
    char window_labels[REPLAY_MAX_WINDOWS][96];
    size_t window_count;
    struct replay_job *jobs, *jobs_tail; /* queued control commands */
    uv_work_t job_work;
    bool job_running;
    int job_rc;
    char job_err[256];
    char *job_reply;
    struct loadgen_second *result; /* copy of the seconds with upstream merged */
    size_t result_count;
    int error;
};

/* --- small helpers ------------------------------------------------------------------------ */

static void replay_say(const struct replay *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void replay_say(const struct replay *r, const char *fmt, ...)
{
    if (r->opt->quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
}

static int replay_write_text(const char *path, const char *text, size_t len)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return BALLAST_EIO;
    bool ok = fwrite(text, 1, len, f) == len;
    ok = fclose(f) == 0 && ok;
    return ok ? BALLAST_OK : BALLAST_EIO;
}

static int replay_mkdirs(const char *path)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
            return BALLAST_EIO;
        *p = '/';
    }
    return mkdir(tmp, 0755) == 0 || errno == EEXIST ? BALLAST_OK : BALLAST_EIO;
}

static const char *replay_addr_ip(const struct addr *a, char *buf, size_t len)
{
    const void *src = a->ss.ss_family == AF_INET6
                          ? (const void *)&((const struct sockaddr_in6 *)&a->ss)->sin6_addr
                          : (const void *)&((const struct sockaddr_in *)&a->ss)->sin_addr;
    if (!inet_ntop(a->ss.ss_family, src, buf, (socklen_t)len))
        snprintf(buf, len, "?");
    return buf;
}

static uint64_t replay_real_ms(const struct replay *r, uint64_t scenario_ms)
{
    return (uint64_t)((double)scenario_ms / r->opt->speed);
}

/* Scenario time now (ms). */
static uint64_t replay_now_ms(const struct replay *r)
{
    return (uint64_t)((double)(uv_hrtime() - r->started_ns) / 1e6 * r->opt->speed);
}

/* The binary `name` next to this tool: in the same directory (installed), or in the build
 * tree's sibling directory (build/tools/ballast -> build/authd/ballast-authd). */
static int replay_find_binary(const char *bin_dir, const char *subdir, const char *name, char *out,
                              size_t len)
{
    char self[PATH_MAX];
    const char *dirs[3];
    size_t n = 0;
    char here[PATH_MAX], sibling[PATH_MAX + 64];
    if (bin_dir)
        dirs[n++] = bin_dir;
    ssize_t got = readlink("/proc/self/exe", self, sizeof self - 1);
    if (got > 0) {
        self[got] = '\0';
        char *slash = strrchr(self, '/');
        if (slash) {
            *slash = '\0';
            snprintf(here, sizeof here, "%s", self);
            snprintf(sibling, sizeof sibling, "%s/../%s", self, subdir);
            dirs[n++] = here;
            dirs[n++] = sibling;
        }
    }
    for (size_t i = 0; i < n; i++) {
        snprintf(out, len, "%s/%s", dirs[i], name);
        if (access(out, X_OK) == 0)
            return BALLAST_OK;
    }
    snprintf(out, len, "%s", name); /* from PATH */
    return BALLAST_OK;
}

/* Append the generated keys of a top-level section to out: inside the user's section of the
 * same name when extra has one ("NAME:" alone on a line), else as a section of their own. The
 * returned text replaces extra (both owned by the caller). */
static char *replay_merge_section(const char *extra, const char *section, const char *keys)
{
    size_t sect_len = strlen(section);
    const char *at = extra;
    while (at && *at) {
        if (strncmp(at, section, sect_len) == 0 && at[sect_len] == ':') {
            const char *rest = at + sect_len + 1;
            while (*rest == ' ' || *rest == '\t')
                rest++;
            if (*rest == '\n' || *rest == '\0')
                break;
        }
        at = strchr(at, '\n');
        if (at)
            at++;
    }
    size_t len = strlen(extra) + strlen(section) + strlen(keys) + 8;
    char *out = malloc(len);
    if (!out)
        return NULL;
    if (at && *at) {
        const char *eol = strchr(at, '\n');
        size_t head = eol ? (size_t)(eol + 1 - extra) : strlen(extra);
        snprintf(out, len, "%.*s%s%s%s", (int)head, extra, eol ? "" : "\n", keys, extra + head);
    } else {
        snprintf(out, len, "%s%s%s:\n%s", extra,
                 extra[0] && extra[strlen(extra) - 1] != '\n' ? "\n" : "", section, keys);
    }
    return out;
}

/* --- the topology files ------------------------------------------------------------------- */

static const struct scenario_authority *replay_authority(const struct scenario *s, const char *name)
{
    for (size_t i = 0; i < s->authority_count; i++)
        if (strcmp(s->authorities[i].name, name) == 0)
            return &s->authorities[i];
    return NULL;
}

static const char *replay_rr_type_for(const struct addr *a)
{
    return a->ss.ss_family == AF_INET6 ? "AAAA" : "A";
}

/* The scenario zone that is the closest parent of zone index z (or -1: the root). */
static long replay_parent_zone(const struct scenario *s, size_t z)
{
    long best = -1;
    size_t best_len = 0;
    const char *name = s->zones[z].name;
    size_t name_len = strlen(name);
    for (size_t i = 0; i < s->zone_count; i++) {
        const char *p = s->zones[i].name;
        size_t plen = strlen(p);
        if (i == z || plen >= name_len || plen <= best_len)
            continue;
        if (strcmp(name + name_len - plen, p) == 0 && name[name_len - plen - 1] == '.') {
            best = (long)i;
            best_len = plen;
        }
    }
    return best;
}

/* Delegations of every zone whose parent is `parent` (-1 = root), as master-file lines. */
static void replay_write_delegations(FILE *f, const struct scenario *s, long parent)
{
    char ip[INET6_ADDRSTRLEN];
    for (size_t i = 0; i < s->zone_count; i++) {
        if (replay_parent_zone(s, i) != parent)
            continue;
        const struct scenario_authority *a = replay_authority(s, s->zones[i].authority);
        if (!a)
            continue;
        fprintf(f, "%s. 3600 IN NS ns.%s.\nns.%s. 3600 IN %s %s\n", s->zones[i].name,
                s->zones[i].name, s->zones[i].name, replay_rr_type_for(&a->address),
                replay_addr_ip(&a->address, ip, sizeof ip));
    }
}

static uint32_t replay_scaled_ttl(const struct replay *r, uint32_t ttl)
{
    uint32_t scaled = (uint32_t)((double)ttl / r->opt->speed);
    return scaled < 1 ? 1 : scaled;
}

/* Files are replaced the way a deploy pipeline should: written beside, then renamed over, so a
 * daemon reading the old one (a reload still running) never sees half of the new one. */
static FILE *replay_open_atomic(const char *path, char *tmp, size_t tmp_len)
{
    snprintf(tmp, tmp_len, "%s.replay-tmp", path);
    return fopen(tmp, "w");
}

static int replay_close_atomic(FILE *f, const char *tmp, const char *path)
{
    bool ok = fclose(f) == 0;
    if (ok && rename(tmp, path) == 0)
        return BALLAST_OK;
    unlink(tmp);
    return BALLAST_EIO;
}

/* The zone file of scenario zone z at path. */
static int replay_write_zone(const struct replay *r, size_t z, const char *path)
{
    const struct scenario *s = r->s;
    const struct scenario_zone *zone = &s->zones[z];
    const struct scenario_authority *a = replay_authority(s, zone->authority);
    char tmp[PATH_MAX + 96];
    FILE *f = a ? replay_open_atomic(path, tmp, sizeof tmp) : NULL;
    if (!f)
        return BALLAST_EIO;
    char ip[INET6_ADDRSTRLEN];
    uint32_t ttl = replay_scaled_ttl(r, zone->ttl);
    fprintf(f,
            "; generated by ballast replay from %s\n$ORIGIN %s.\n$TTL %u\n"
            "@ IN SOA ns.%s. hostmaster.%s. 1 3600 600 86400 %u\n@ IN NS ns.%s.\n"
            "ns IN %s %s\n",
            s->source_file, zone->name, ttl, zone->name, zone->name, ttl, zone->name,
            replay_rr_type_for(&a->address), replay_addr_ip(&a->address, ip, sizeof ip));
    for (size_t i = 0; i < zone->record_count; i++)
        fprintf(f, "%s\n", zone->records[i]);
    replay_write_delegations(f, s, (long)z);
    return replay_close_atomic(f, tmp, path);
}

static int replay_write_root(struct replay *r)
{
    char path[PATH_MAX + 32], ip[INET6_ADDRSTRLEN];
    snprintf(path, sizeof path, "%s/root.zone", r->run_dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return BALLAST_EIO;
    replay_addr_ip(&r->root_addr, ip, sizeof ip);
    fprintf(f,
            "; generated by ballast replay: the root of the replay's private hierarchy\n"
            "$ORIGIN .\n$TTL 86400\n"
            ". IN SOA a.root-servers.replay. hostmaster.replay. 1 3600 600 86400 60\n"
            ". IN NS a.root-servers.replay.\n"
            "a.root-servers.replay. IN %s %s\n",
            replay_rr_type_for(&r->root_addr), ip);
    replay_write_delegations(f, r->s, -1);
    if (fclose(f) != 0)
        return BALLAST_EIO;
    snprintf(path, sizeof path, "%s/root.hints", r->run_dir);
    char hints[256];
    int n = snprintf(hints, sizeof hints,
                     ". 3600000 NS a.root-servers.replay.\n"
                     "a.root-servers.replay. 3600000 %s %s\n",
                     replay_rr_type_for(&r->root_addr), ip);
    return replay_write_text(path, hints, (size_t)n);
}

/* A daemon's config: the generated sections merged with the scenario's extra-config. */
static int replay_write_config(const char *path, const char *extra, const char *const *sections,
                               const char *const *keys, size_t count)
{
    char *text = strdup(extra ? extra : "");
    for (size_t i = 0; text && i < count; i++) {
        char *merged = replay_merge_section(text, sections[i], keys[i]);
        free(text);
        text = merged;
    }
    if (!text)
        return BALLAST_ENOMEM;
    int rc = replay_write_text(path, text, strlen(text));
    free(text);
    return rc;
}

static void replay_daemon_init(struct replay *r, struct replay_daemon *d, const char *name)
{
    d->r = r;
    snprintf(d->name, sizeof d->name, "%s", name);
    snprintf(d->config_path, sizeof d->config_path, "%s/%s.yaml", r->run_dir, name);
    snprintf(d->control_path, sizeof d->control_path, "%s/%s.sock", r->socket_dir, name);
    snprintf(d->log_path, sizeof d->log_path, "%s/%s.log", r->run_dir, name);
}

/* The authd config of daemon d serving the zones of authority `authority` (NULL: the root). */
static int replay_write_authd(struct replay *r, struct replay_daemon *d,
                              const struct scenario_authority *authority)
{
    char ip[INET6_ADDRSTRLEN];
    char server[PATH_MAX + 256], zones[16384], limits[128];
    const struct addr *addr = authority ? &authority->address : &r->root_addr;
    snprintf(server, sizeof server,
             "  listen: \"%s@%u\"\n  workers: 1\n  control: %s\n  log-level: info\n",
             replay_addr_ip(addr, ip, sizeof ip), r->s->port, d->control_path);
    snprintf(limits, sizeof limits, "  max-zone-records: %u\n", REPLAY_ZONE_RECORD_LIMIT);
    size_t used = 0;
    if (!authority) {
        used += (size_t)snprintf(zones, sizeof zones, "  - name: \".\"\n    file: root.zone\n");
    } else {
        for (size_t i = 0; i < r->s->zone_count && used < sizeof zones; i++) {
            if (strcmp(r->s->zones[i].authority, authority->name) != 0)
                continue;
            char file[PATH_MAX + 64];
            snprintf(file, sizeof file, "%s/%s.zone", r->run_dir, r->s->zones[i].name);
            int rc = replay_write_zone(r, i, file);
            if (rc != 0)
                return rc;
            used += (size_t)snprintf(zones + used, sizeof zones - used,
                                     "  - name: \"%s\"\n    file: %s.zone\n", r->s->zones[i].name,
                                     r->s->zones[i].name);
        }
    }
    const char *sections[] = {"server", "limits", "zones"};
    const char *keys[] = {server, limits, zones};
    return replay_write_config(d->config_path, authority ? authority->extra_config : NULL, sections,
                               keys, 3);
}

static int replay_write_resolver(struct replay *r, struct replay_daemon *d)
{
    char ip[INET6_ADDRSTRLEN];
    char server[PATH_MAX + 256], resolution[PATH_MAX + 256];
    snprintf(server, sizeof server,
             "  listen: \"%s@%u\"\n  workers: 1\n  control: %s\n  log-level: info\n",
             replay_addr_ip(&r->s->resolver.address, ip, sizeof ip), r->s->port, d->control_path);
    snprintf(resolution, sizeof resolution,
             "  root-hints: %s/root.hints\n  allow-private-upstreams: true\n"
             "  upstream-port: %u\n",
             r->run_dir, r->s->port);
    const char *sections[] = {"server", "resolution"};
    const char *keys[] = {server, resolution};
    return replay_write_config(d->config_path, r->s->resolver.extra_config, sections, keys, 2);
}

/* Unbound's defaults except what a private loopback hierarchy needs (../shared/PEERS.md): the
 * generated root hints, loopback upstreams, no DNSSEC module, `test.` not a local zone. */
static int replay_write_unbound(struct replay *r, struct replay_daemon *d)
{
    char ip[INET6_ADDRSTRLEN];
    FILE *f = fopen(d->config_path, "w");
    if (!f)
        return BALLAST_EIO;
    fprintf(f,
            "# generated by ballast replay: the --compare baseline\n"
            "server:\n    interface: %s\n    port: %u\n    num-threads: 1\n"
            "    username: \"\"\n    chroot: \"\"\n    directory: \"%s\"\n    pidfile: \"\"\n"
            "    logfile: \"\"\n    use-syslog: no\n    verbosity: 1\n"
            "    root-hints: \"%s/root.hints\"\n    do-not-query-localhost: no\n"
            "    module-config: \"iterator\"\n    local-zone: \"test.\" nodefault\n"
            "    access-control: 127.0.0.0/8 allow\n    access-control: ::1 allow\n"
            "remote-control:\n    control-enable: no\n",
            replay_addr_ip(&r->s->resolver.address, ip, sizeof ip), r->s->port, r->run_dir,
            r->run_dir);
    return fclose(f) == 0 ? BALLAST_OK : BALLAST_EIO;
}

/* Does a DNS server answer at a (UDP, any response to ". NS")? For daemons without our control
 * socket (Unbound). */
static bool replay_dns_answers(const struct addr *a, uint16_t port)
{
    struct addr to = *a;
    if (to.ss.ss_family == AF_INET6)
        ((struct sockaddr_in6 *)&to.ss)->sin6_port = htons(port);
    else
        ((struct sockaddr_in *)&to.ss)->sin_port = htons(port);
    int fd = socket(to.ss.ss_family, SOCK_DGRAM, 0);
    if (fd < 0)
        return false;
    struct timeval tv = {.tv_sec = 0, .tv_usec = 300000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    const uint8_t query[] = {0x4b, 0x1d, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1};
    uint8_t resp[512];
    bool ok = sendto(fd, query, sizeof query, 0, (const struct sockaddr *)&to.ss, to.len) > 0 &&
              recv(fd, resp, sizeof resp, 0) >= 2 && resp[0] == 0x4b && resp[1] == 0x1d;
    close(fd);
    return ok;
}

/* The root server's address: the first free .1, .2, ... in the resolver's /24. */
static void replay_pick_root(struct replay *r)
{
    const struct scenario *s = r->s;
    r->root_addr = s->resolver.address;
    struct sockaddr_in *sin = (struct sockaddr_in *)&r->root_addr.ss;
    if (sin->sin_family != AF_INET)
        return;
    uint32_t base = ntohl(sin->sin_addr.s_addr) & 0xFFFFFF00u;
    for (uint32_t host = 1; host < 255; host++) {
        uint32_t candidate = base | host;
        bool used = candidate ==
                    ntohl(((const struct sockaddr_in *)&s->resolver.address.ss)->sin_addr.s_addr);
        for (size_t i = 0; i < s->authority_count && !used; i++) {
            const struct sockaddr_in *a = (const struct sockaddr_in *)&s->authorities[i].address.ss;
            used = a->sin_family == AF_INET && ntohl(a->sin_addr.s_addr) == candidate;
        }
        for (size_t i = 0; i < s->endpoint_count && !used; i++) {
            const struct sockaddr_in *a = (const struct sockaddr_in *)&s->endpoints[i].address.ss;
            used = a->sin_family == AF_INET && ntohl(a->sin_addr.s_addr) == candidate;
        }
        if (!used) {
            sin->sin_addr.s_addr = htonl(candidate);
            return;
        }
    }
}

/* --- processes ---------------------------------------------------------------------------- */

static void replay_daemon_on_closed(uv_handle_t *handle);
static int replay_daemon_spawn(struct replay_daemon *d);

static void replay_daemon_on_exit(uv_process_t *proc, int64_t status, int term_signal)
{
    struct replay_daemon *d = proc->data;
    d->running = false;
    d->exited_clean = status == 0 && term_signal == 0;
    uv_close((uv_handle_t *)proc, replay_daemon_on_closed);
}

static void replay_daemon_on_closed(uv_handle_t *handle)
{
    struct replay_daemon *d = handle->data;
    d->spawned = false;
    if (d->start_on_exit) {
        d->start_on_exit = false;
        if (replay_daemon_spawn(d) != 0)
            replay_say(d->r, "replay: cannot restart %s\n", d->name);
    }
}

static int replay_daemon_spawn(struct replay_daemon *d)
{
    int fd = open(d->log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0)
        return BALLAST_EIO;
    uv_stdio_container_t stdio[3] = {
        {.flags = UV_IGNORE},
        {.flags = UV_INHERIT_FD, .data.fd = fd},
        {.flags = UV_INHERIT_FD, .data.fd = fd},
    };
    uv_process_options_t options = {
        .exit_cb = replay_daemon_on_exit,
        .file = d->argv[0],
        .args = d->argv,
        .stdio_count = 3,
        .stdio = stdio,
    };
    d->proc.data = d;
    int rc = uv_spawn(&d->r->loop, &d->proc, &options);
    close(fd);
    if (rc != 0) {
        uv_close((uv_handle_t *)&d->proc, NULL);
        fprintf(stderr, "replay: cannot start %s (%s): %s\n", d->name, d->argv[0], uv_strerror(rc));
        return BALLAST_ESYS;
    }
    d->spawned = true;
    d->running = true;
    return BALLAST_OK;
}

static void replay_daemon_signal(struct replay_daemon *d, int sig)
{
    if (d->running)
        uv_process_kill(&d->proc, sig);
}

#define REPLAY_JOB_TIMEOUT_MS 60000u

static void replay_job_start(struct replay *r);

static void replay_job_work(uv_work_t *work)
{
    struct replay *r = work->data;
    r->job_err[0] = '\0';
    r->job_reply = NULL;
    r->job_rc =
        control_client_call(r->jobs->daemon->control_path, r->jobs->command, REPLAY_JOB_TIMEOUT_MS,
                            &r->job_reply, r->job_err, sizeof r->job_err);
}

static void replay_job_done(uv_work_t *work, int status)
{
    struct replay *r = work->data;
    struct replay_job *job = r->jobs;
    if (r->job_rc != 0 && !r->opt->quiet)
        fprintf(stderr, "replay: %s: '%s' failed: %s\n", job->daemon->name, job->command,
                r->job_reply && *r->job_reply ? r->job_reply : r->job_err);
    free(r->job_reply);
    r->job_reply = NULL;
    r->jobs = job->next;
    if (!r->jobs)
        r->jobs_tail = NULL;
    free(job);
    r->job_running = false;
    replay_job_start(r);
}

static void replay_job_start(struct replay *r)
{
    if (r->job_running || !r->jobs)
        return;
    r->job_running = true;
    r->job_work.data = r;
    if (uv_queue_work(&r->loop, &r->job_work, replay_job_work, replay_job_done) != 0) {
        r->job_running = false;
        fprintf(stderr, "replay: cannot queue '%s'\n", r->jobs->command);
    }
}

/* Send command to d's control socket without blocking the loop (in order with earlier ones). */
static void replay_control_async(struct replay_daemon *d, const char *command)
{
    struct replay *r = d->r;
    struct replay_job *job = calloc(1, sizeof *job);
    if (!job)
        return;
    job->daemon = d;
    snprintf(job->command, sizeof job->command, "%s", command);
    if (r->jobs_tail)
        r->jobs_tail->next = job;
    else
        r->jobs = job;
    r->jobs_tail = job;
    replay_job_start(r);
}

/* Wait until every daemon answers `status` on its control socket (the loop runs meanwhile so
 * exits are seen). */
static int replay_wait_ready(struct replay *r)
{
    uint64_t deadline = uv_hrtime() + (uint64_t)REPLAY_READY_TIMEOUT_MS * 1000000u;
    for (size_t i = 0; i < r->daemon_count; i++) {
        struct replay_daemon *d = &r->daemons[i];
        for (;;) {
            uv_run(&r->loop, UV_RUN_NOWAIT);
            char err[128];
            char *text = NULL;
            bool unbound = r->unbound && i == r->daemon_count - 1;
            if (unbound ? replay_dns_answers(&r->s->resolver.address, r->s->port)
                        : control_client_call(d->control_path, "status", 500, &text, err,
                                              sizeof err) == 0) {
                free(text);
                break;
            }
            free(text);
            if (!d->running || uv_hrtime() > deadline) {
                fprintf(stderr, "replay: %s did not start; see %s\n", d->name, d->log_path);
                return BALLAST_ETIMEOUT;
            }
            usleep(50000);
        }
    }
    return BALLAST_OK;
}

/* --- endpoints ---------------------------------------------------------------------------- */

static void replay_conn_free(uv_handle_t *handle)
{
    free(handle->data);
}

static void replay_conn_on_closed(uv_handle_t *handle)
{
    struct replay_conn *c = handle->data;
    uv_close((uv_handle_t *)&c->delay, replay_conn_free);
}

static void replay_conn_close(struct replay_conn *c)
{
    if (!uv_is_closing((uv_handle_t *)&c->tcp)) {
        uv_timer_stop(&c->delay);
        uv_close((uv_handle_t *)&c->tcp, replay_conn_on_closed);
    }
}

static void replay_conn_on_written(uv_write_t *req, int status)
{
    struct replay_conn *c = req->data;
    free(req);
    replay_conn_close(c);
}

static void replay_conn_answer(struct replay_conn *c)
{
    static const char ok[] = "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n"
                             "Content-Length: 3\r\nConnection: close\r\n\r\nok\n";
    if (c->answered)
        return;
    c->answered = true;
    if (!c->http) {
        replay_conn_close(c);
        return;
    }
    uv_write_t *req = malloc(sizeof *req);
    uv_buf_t buf = uv_buf_init((char *)ok, sizeof ok - 1);
    if (!req || uv_write(req, (uv_stream_t *)&c->tcp, &buf, 1, replay_conn_on_written) != 0) {
        free(req);
        replay_conn_close(c);
        return;
    }
    req->data = c;
}

static void replay_conn_on_delay(uv_timer_t *timer)
{
    replay_conn_answer(timer->data);
}

static void replay_conn_alloc(uv_handle_t *handle, size_t size, uv_buf_t *buf)
{
    static char scratch[4096];
    *buf = uv_buf_init(scratch, sizeof scratch);
}

static void replay_conn_on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct replay_conn *c = stream->data;
    if (nread < 0) {
        replay_conn_close(c);
        return;
    }
    if (nread == 0 || c->answered || uv_is_active((uv_handle_t *)&c->delay))
        return;
    /* answer once the request has come (an HTTP probe sends its request first) */
    if (c->endpoint->state == SCENARIO_ENDPOINT_SLOW)
        uv_timer_start(&c->delay, replay_conn_on_delay, c->endpoint->cfg->slow_ms, 0);
    else
        replay_conn_answer(c);
}

static void replay_endpoint_on_connection(uv_stream_t *server, int status)
{
    struct replay_endpoint *e = server->data;
    if (status != 0)
        return;
    struct replay_conn *c = calloc(1, sizeof *c);
    if (!c)
        return;
    c->endpoint = e;
    c->http = e->cfg->kind == SCENARIO_ENDPOINT_HTTP;
    uv_tcp_init(server->loop, &c->tcp);
    uv_timer_init(server->loop, &c->delay);
    c->tcp.data = c;
    c->delay.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        replay_conn_close(c);
        return;
    }
    if (c->http)
        uv_read_start((uv_stream_t *)&c->tcp, replay_conn_alloc, replay_conn_on_read);
    else if (e->state == SCENARIO_ENDPOINT_SLOW)
        uv_timer_start(&c->delay, replay_conn_on_delay, e->cfg->slow_ms, 0);
    else
        replay_conn_answer(c);
}

static int replay_endpoint_open(struct replay_endpoint *e)
{
    if (e->open)
        return BALLAST_OK;
    uv_tcp_init(&e->r->loop, &e->server);
    e->server.data = e;
    int rc = uv_tcp_bind(&e->server, (const struct sockaddr *)&e->cfg->address.ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&e->server, 128, replay_endpoint_on_connection);
    if (rc != 0) {
        fprintf(stderr, "replay: endpoint %s cannot listen: %s\n", e->cfg->name, uv_strerror(rc));
        uv_close((uv_handle_t *)&e->server, NULL);
        return BALLAST_ESYS;
    }
    e->open = true;
    return BALLAST_OK;
}

static void replay_endpoint_close(struct replay_endpoint *e)
{
    if (e->open) {
        uv_close((uv_handle_t *)&e->server, NULL);
        e->open = false;
    }
}

/* --- the timeline ------------------------------------------------------------------------- */

static struct replay_daemon *replay_daemon_named(struct replay *r, const char *name)
{
    for (size_t i = 0; i < r->daemon_count; i++)
        if (strcmp(r->daemons[i].name, name) == 0)
            return &r->daemons[i];
    return NULL;
}

/* Open a shaded window (closed by replay_window_close or at the end). */
static void replay_window_open(struct replay *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void replay_window_open(struct replay *r, const char *fmt, ...)
{
    if (r->window_count >= REPLAY_MAX_WINDOWS)
        return;
    size_t i = r->window_count++;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->window_labels[i], sizeof r->window_labels[i], fmt, ap);
    va_end(ap);
    r->windows[i] = (struct replay_window){replay_now_ms(r), UINT64_MAX, r->window_labels[i]};
}

/* Close the open windows whose label contains `what`. */
static void replay_window_close(struct replay *r, const char *what)
{
    for (size_t i = 0; i < r->window_count; i++)
        if (r->windows[i].end_ms == UINT64_MAX && strstr(r->window_labels[i], what))
            r->windows[i].end_ms = replay_now_ms(r);
}

static const char *replay_bad_name(enum scenario_bad_input bad)
{
    return bad == SCENARIO_BAD_GARBAGE ? "garbage"
           : bad == SCENARIO_BAD_EMPTY ? "empty"
                                       : "oversized";
}

/* Write bad content of kind `bad` over path. Zones get zone-shaped garbage. */
static int replay_write_bad(const char *path, enum scenario_bad_input bad, bool zone,
                            const char *origin)
{
    char tmp[PATH_MAX * 2 + 96];
    FILE *f = replay_open_atomic(path, tmp, sizeof tmp);
    if (!f)
        return BALLAST_EIO;
    if (bad == SCENARIO_BAD_GARBAGE) {
        fputs(zone ? "$ORIGIN broken.\n@ IN SOA this is not a zone\n\x01\x02 garbage {{{\n"
                   : "{\"generation\": \"x\", \"members\": [ {\"address\": 12 \x01 garbage",
              f);
    } else if (bad == SCENARIO_BAD_OVERSIZED) {
        if (zone) {
            fprintf(f,
                    "$ORIGIN %s.\n$TTL 300\n@ IN SOA ns hostmaster 2 3600 600 86400 300\n"
                    "@ IN NS ns\nns IN A 127.0.0.1\n",
                    origin);
            for (uint32_t i = 0; i < REPLAY_OVERSIZED_RECORDS; i++)
                fprintf(f, "gen%u IN A 192.0.2.%u\n", i, i % 250 + 1);
        } else {
            fputs("{\"generation\": 1, \"members\": [", f);
            for (size_t n = 0; n < REPLAY_FEED_OVERSIZED_BYTES / 40; n++)
                fprintf(f, "%s{\"address\":\"127.0.0.%zu\",\"state\":\"up\"}", n ? "," : "",
                        n % 250 + 1);
            fputs("]}\n", f);
        }
    }
    return replay_close_atomic(f, tmp, path);
}

static void replay_apply(struct replay *r, const struct scenario_event *e)
{
    struct replay_daemon *d = e->target ? replay_daemon_named(r, e->target) : NULL;
    char command[600];
    replay_say(r, "replay: t=%.1fs %s %s\n", (double)replay_now_ms(r) / 1000.0,
               e->action == SCENARIO_FAULT ? scenario_fault_name(e->fault)
                                           : scenario_action_name(e->action),
               e->target ? e->target : "");
    switch (e->action) {
    case SCENARIO_FAULT: {
        int n = snprintf(command, sizeof command, "fault add %s", scenario_fault_name(e->fault));
        if (e->name)
            n += snprintf(command + n, sizeof command - (size_t)n, " name=%s", e->name);
        if (e->fault == SCENARIO_FAULT_LOSS)
            n += snprintf(command + n, sizeof command - (size_t)n, " percent=%u", e->percent);
        if (e->fault == SCENARIO_FAULT_LATENCY)
            snprintf(command + n, sizeof command - (size_t)n, " delay=%ums", e->delay_ms);
        if (d)
            replay_control_async(d, command);
        replay_window_open(r, "%s %s%s%s", scenario_fault_name(e->fault), e->target,
                           e->name ? " " : "", e->name ? e->name : "");
        break;
    }
    case SCENARIO_HEAL:
        if (d)
            replay_control_async(d, "fault clear");
        replay_window_close(r, e->target);
        break;
    case SCENARIO_ENDPOINT:
        for (size_t i = 0; i < r->s->endpoint_count; i++) {
            struct replay_endpoint *ep = &r->endpoints[i];
            if (strcmp(ep->cfg->name, e->target) != 0)
                continue;
            ep->state = e->state;
            if (e->state == SCENARIO_ENDPOINT_DOWN) {
                replay_endpoint_close(ep);
                replay_window_open(r, "%s down", e->target);
            } else {
                replay_window_close(r, e->target);
                replay_endpoint_open(ep);
                if (e->state == SCENARIO_ENDPOINT_SLOW)
                    replay_window_open(r, "%s slow", e->target);
            }
        }
        break;
    case SCENARIO_RESTART:
        if (d && d->running) {
            d->start_on_exit = true;
            replay_daemon_signal(d, SIGTERM);
        } else if (d && !d->spawned) {
            replay_daemon_spawn(d);
        }
        break;
    case SCENARIO_KILL:
        if (d) {
            d->start_on_exit = false;
            replay_daemon_signal(d, SIGKILL);
        }
        replay_window_open(r, "%s killed", e->target);
        break;
    case SCENARIO_START:
        if (d && !d->spawned)
            replay_daemon_spawn(d);
        else if (d && !d->running)
            d->start_on_exit = true;
        replay_window_close(r, e->target);
        break;
    case SCENARIO_PUSH_ZONE:
    case SCENARIO_RESTORE_ZONE:
        for (size_t i = 0; i < r->s->zone_count; i++) {
            if (strcmp(r->s->zones[i].name, e->target) != 0)
                continue;
            char path[PATH_MAX + 64];
            snprintf(path, sizeof path, "%s/%s.zone", r->run_dir, r->s->zones[i].name);
            if (e->action == SCENARIO_PUSH_ZONE) {
                replay_write_bad(path, e->bad, true, r->s->zones[i].name);
                replay_window_open(r, "%s zone pushed for %s", replay_bad_name(e->bad), e->target);
            } else {
                replay_write_zone(r, i, path);
                replay_window_close(r, e->target);
            }
            struct replay_daemon *owner = replay_daemon_named(r, r->s->zones[i].authority);
            if (owner)
                replay_control_async(owner, "reload");
        }
        break;
    case SCENARIO_PUSH_FEED: {
        char path[PATH_MAX * 2];
        snprintf(path, sizeof path, "%s/%s", r->run_dir, e->file ? e->file : "feed.json");
        replay_write_bad(path, e->bad, false, NULL);
        replay_window_open(r, "%s feed pushed to %s", replay_bad_name(e->bad), e->target);
        break;
    }
    }
}

static void replay_on_event(uv_timer_t *timer)
{
    struct replay *r = timer->data;
    const struct scenario *s = r->s;
    while (r->next_event < s->event_count && replay_real_ms(r, s->events[r->next_event].at_ms) <=
                                                 (uv_hrtime() - r->started_ns) / 1000000u)
        replay_apply(r, &s->events[r->next_event++]);
    if (r->next_event < s->event_count) {
        uint64_t due = replay_real_ms(r, s->events[r->next_event].at_ms);
        uint64_t now = (uv_hrtime() - r->started_ns) / 1000000u;
        uv_timer_start(&r->event_timer, replay_on_event, due > now ? due - now : 0, 0);
    }
}

/* --- per second: upstream queries and progress ------------------------------------------- */

static uint64_t replay_stat(const char *text, const char *key)
{
    size_t len = strlen(key);
    for (const char *p = text; p && *p; p = strchr(p, '\n')) {
        if (*p == '\n')
            p++;
        if (strncmp(p, key, len) == 0 && p[len] == '=')
            return strtoull(p + len + 1, NULL, 10);
    }
    return 0;
}

static void replay_record_upstream(struct replay *r, size_t second, uint64_t count)
{
    if (second >= r->upstream_cap) {
        size_t cap = r->upstream_cap ? r->upstream_cap * 2 : 64;
        while (cap <= second)
            cap *= 2;
        uint64_t *grown = realloc(r->upstream, cap * sizeof *grown);
        if (!grown)
            return;
        memset(grown + r->upstream_cap, 0, (cap - r->upstream_cap) * sizeof *grown);
        r->upstream = grown;
        r->upstream_cap = cap;
    }
    r->upstream[second] += count;
}

static void replay_on_tick(uv_timer_t *timer)
{
    struct replay *r = timer->data;
    size_t second = (size_t)((uv_hrtime() - r->started_ns) / 1000000000u);
    struct replay_daemon *resolver = &r->daemons[r->daemon_count - 1];
    char *text = NULL;
    char err[64];
    if (resolver->running && !r->unbound &&
        control_client_call(resolver->control_path, "stats", 1000, &text, err, sizeof err) == 0) {
        uint64_t total = replay_stat(text, "upstream_udp") + replay_stat(text, "upstream_tcp");
        uint64_t delta = !r->have_upstream_total           ? total
                         : total >= r->last_upstream_total ? total - r->last_upstream_total
                                                           : total; /* restarted: counters reset */
        r->last_upstream_total = total;
        r->have_upstream_total = true;
        replay_record_upstream(r, second ? second - 1 : 0, delta);
    } else {
        r->have_upstream_total = false;
    }
    free(text);
    if (r->opt->quiet || !r->lg || second == 0)
        return;
    size_t count = 0;
    const struct loadgen_second *sec = loadgen_seconds(r->lg, &count);
    if (count < second)
        return;
    const struct loadgen_second *last = &sec[second - 1];
    double ok = last->sent ? 100.0 * (double)last->with_data / (double)last->sent : 0.0;
    fprintf(stderr,
            "[%6.0fs/%.0fs] %-8s queries %5llu  data %5.1f%%  stale %4llu  servfail %4llu  "
            "timeouts %4llu  p99 %7.1f ms  upstream %4llu\n",
            (double)(second - 1) * r->opt->speed, (double)r->s->duration_ms / 1000.0, r->label,
            (unsigned long long)last->sent, ok, (unsigned long long)last->stale,
            (unsigned long long)last->servfail, (unsigned long long)last->timeouts,
            (double)last->p99_us / 1000.0,
            (unsigned long long)(second - 1 < r->upstream_cap ? r->upstream[second - 1] : 0));
}

/* --- the run ------------------------------------------------------------------------------ */

static void replay_on_load_done(void *ctx)
{
    struct replay *r = ctx;
    r->load_done = true;
}

static void replay_on_end(uv_timer_t *timer)
{
    struct replay *r = timer->data;
    uv_timer_stop(&r->event_timer);
    loadgen_stop(r->lg, replay_on_load_done, r);
}

static int replay_build(struct replay *r)
{
    const struct scenario *s = r->s;
    if (replay_mkdirs(r->run_dir) != 0) {
        fprintf(stderr, "replay: cannot create %s: %s\n", r->run_dir, strerror(errno));
        return BALLAST_EIO;
    }
    snprintf(r->socket_dir, sizeof r->socket_dir, "/tmp/ballast-replay-XXXXXX");
    if (!mkdtemp(r->socket_dir)) {
        fprintf(stderr, "replay: cannot create a socket directory: %s\n", strerror(errno));
        r->socket_dir[0] = '\0';
        return BALLAST_EIO;
    }
    replay_find_binary(r->opt->bin_dir, "authd", "ballast-authd", r->authd_bin,
                       sizeof r->authd_bin);
    replay_find_binary(r->opt->bin_dir, "resolver", "ballast-resolver", r->resolver_bin,
                       sizeof r->resolver_bin);
    snprintf(r->unbound_bin, sizeof r->unbound_bin, "%s",
             access("/usr/sbin/unbound", X_OK) == 0 ? "/usr/sbin/unbound" : "unbound");
    replay_pick_root(r);
    r->daemon_count = s->authority_count + 2;
    r->daemons = calloc(r->daemon_count, sizeof *r->daemons);
    r->endpoints = calloc(s->endpoint_count ? s->endpoint_count : 1, sizeof *r->endpoints);
    if (!r->daemons || !r->endpoints)
        return BALLAST_ENOMEM;
    int rc = replay_write_root(r);
    for (size_t i = 0; rc == 0 && i < r->daemon_count; i++) {
        struct replay_daemon *d = &r->daemons[i];
        bool resolver = i == r->daemon_count - 1;
        const struct scenario_authority *a = i > 0 && !resolver ? &s->authorities[i - 1] : NULL;
        replay_daemon_init(r, d, resolver ? "resolver" : a ? a->name : "root");
        size_t n = 0;
        if (resolver && r->unbound) {
            d->argv[n++] = r->unbound_bin;
            d->argv[n++] = "-d";
            d->argv[n++] = "-c";
            d->argv[n++] = d->config_path;
            d->argv[n] = NULL;
            rc = replay_write_unbound(r, d);
            continue;
        }
        d->argv[n++] = resolver ? r->resolver_bin : r->authd_bin;
        d->argv[n++] = "-c";
        d->argv[n++] = d->config_path;
        if (a)
            d->argv[n++] = "--fault-injection";
        if (a && r->protections_off && !r->unbound)
            d->argv[n++] = "--fail-closed";
        if (resolver && r->protections_off && !r->unbound)
            d->argv[n++] = "--no-serve-stale";
        /* Throwaway daemons on loopback ports, reading files of this run: as root they stay root
         * rather than being refused (issue #7), whatever the environment says. */
        if (geteuid() == 0)
            d->argv[n++] = "--allow-root";
        d->argv[n] = NULL;
        rc = resolver ? replay_write_resolver(r, d) : replay_write_authd(r, d, a);
    }
    if (rc != 0)
        fprintf(stderr, "replay: cannot write the topology files in %s\n", r->run_dir);
    return rc;
}

static void replay_close_walk(uv_handle_t *handle, void *arg)
{
    if (!uv_is_closing(handle))
        uv_close(handle, NULL);
}

static void replay_on_wakeup(uv_timer_t *timer)
{
}

/* Stop every daemon (SIGTERM, then SIGKILL after a while) and close the endpoints. */
static void replay_teardown(struct replay *r)
{
    while (r->jobs && r->jobs->next) { /* queued, not started: dropped */
        struct replay_job *next = r->jobs->next->next;
        free(r->jobs->next);
        r->jobs->next = next;
    }
    if (r->jobs && !r->job_running) {
        free(r->jobs);
        r->jobs = NULL;
    }
    r->jobs_tail = r->jobs;
    uv_timer_t wakeup; /* so the wait below sees its deadline */
    uv_timer_init(&r->loop, &wakeup);
    uv_timer_start(&wakeup, replay_on_wakeup, 100, 100);
    for (size_t i = 0; i < r->daemon_count; i++) {
        r->daemons[i].start_on_exit = false;
        replay_daemon_signal(&r->daemons[i], SIGTERM);
    }
    uint64_t deadline = uv_hrtime() + (uint64_t)REPLAY_STOP_TIMEOUT_MS * 1000000u;
    for (;;) {
        bool any = false;
        for (size_t i = 0; i < r->daemon_count; i++)
            any = any || r->daemons[i].spawned;
        if (!any)
            break;
        if (uv_hrtime() > deadline) {
            for (size_t i = 0; i < r->daemon_count; i++)
                replay_daemon_signal(&r->daemons[i], SIGKILL);
            deadline = UINT64_MAX;
        }
        uv_run(&r->loop, UV_RUN_ONCE);
    }
    for (size_t i = 0; i < r->s->endpoint_count; i++)
        replay_endpoint_close(&r->endpoints[i]);
    if (r->lg) {
        loadgen_free(r->lg);
        r->lg = NULL;
    }
    uv_walk(&r->loop, replay_close_walk, NULL);
    uv_run(&r->loop, UV_RUN_DEFAULT);
    for (size_t i = 0; i < r->daemon_count; i++)
        unlink(r->daemons[i].control_path);
    if (r->socket_dir[0])
        rmdir(r->socket_dir);
}

/* Copy the load's seconds and merge the upstream counts in. */
static int replay_collect(struct replay *r)
{
    size_t count = 0;
    const struct loadgen_second *sec = loadgen_seconds(r->lg, &count);
    size_t want = (size_t)((replay_real_ms(r, r->s->duration_ms) + 999) / 1000);
    if (count > want)
        count = want; /* the tail after the end only holds queries that were in flight */
    r->result = calloc(count ? count : 1, sizeof *r->result);
    if (!r->result)
        return BALLAST_ENOMEM;
    memcpy(r->result, sec, count * sizeof *sec);
    for (size_t i = 0; i < count; i++)
        r->result[i].upstream = i < r->upstream_cap ? r->upstream[i] : 0;
    r->result_count = count;
    for (size_t i = 0; i < r->window_count; i++)
        if (r->windows[i].end_ms == UINT64_MAX)
            r->windows[i].end_ms = r->s->duration_ms;
    return BALLAST_OK;
}

/* One run of the scenario: build, start, load + timeline, stop. */
static int replay_run_once(struct replay *r)
{
    const struct scenario *s = r->s;
    int rc = uv_loop_init(&r->loop);
    if (rc != 0)
        return BALLAST_ESYS;
    rc = replay_build(r);
    for (size_t i = 0; rc == 0 && i < r->daemon_count; i++)
        rc = replay_daemon_spawn(&r->daemons[i]);
    for (size_t i = 0; rc == 0 && i < s->endpoint_count; i++) {
        r->endpoints[i] = (struct replay_endpoint){.r = r, .cfg = &s->endpoints[i]};
        rc = replay_endpoint_open(&r->endpoints[i]);
    }
    if (rc == 0)
        rc = replay_wait_ready(r);
    struct loadgen_name *names = NULL;
    if (rc == 0) {
        names = calloc(s->load.name_count, sizeof *names);
        rc = names ? 0 : BALLAST_ENOMEM;
    }
    for (size_t i = 0; rc == 0 && i < s->load.name_count; i++) {
        const struct scenario_name *n = &s->load.names[i];
        memcpy(names[i].wire, n->wire, n->wire_len);
        names[i].wire_len = n->wire_len;
        names[i].qtype = n->qtype;
        names[i].weight = n->weight;
        for (size_t j = 0; j < s->expect.never_empty_count; j++) {
            uint8_t wire[WIRE_NAME_MAX];
            size_t len = 0;
            if (wire_name_from_text(s->expect.never_empty[j], wire, &len) == 0 &&
                wire_name_equal_nocase(wire, len, n->wire, n->wire_len))
                names[i].never_empty = true;
        }
    }
    if (rc == 0) {
        struct loadgen_options lo = {
            .server = s->resolver.address,
            .names = names,
            .name_count = s->load.name_count,
            .rate = s->load.rate,
            .clients = s->load.clients,
            .timeout_ms = s->load.timeout_ms,
        };
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&lo.server.ss;
        struct sockaddr_in *sin = (struct sockaddr_in *)&lo.server.ss;
        if (lo.server.ss.ss_family == AF_INET6)
            sin6->sin6_port = htons(s->port);
        else
            sin->sin_port = htons(s->port);
        replay_say(r, "replay: %s: %s, %.0f s at speed %g (%.1f s real), %u queries/s\n", r->label,
                   s->name, (double)s->duration_ms / 1000.0, r->opt->speed,
                   (double)replay_real_ms(r, s->duration_ms) / 1000.0, s->load.rate);
        r->started_ns = uv_hrtime();
        rc = loadgen_start(&r->loop, &lo, &r->lg);
        if (rc != 0)
            fprintf(stderr, "replay: cannot start the client load: %s\n", ballast_strerror(rc));
    }
    free(names);
    if (rc == 0) {
        uv_timer_init(&r->loop, &r->event_timer);
        uv_timer_init(&r->loop, &r->tick_timer);
        uv_timer_init(&r->loop, &r->end_timer);
        r->event_timer.data = r->tick_timer.data = r->end_timer.data = r;
        replay_on_event(&r->event_timer);
        uv_timer_start(&r->tick_timer, replay_on_tick, 1000, 1000);
        uv_timer_start(&r->end_timer, replay_on_end, replay_real_ms(r, s->duration_ms), 0);
        while (!r->load_done)
            uv_run(&r->loop, UV_RUN_ONCE);
        uv_timer_stop(&r->tick_timer);
        rc = replay_collect(r);
    }
    replay_teardown(r);
    uv_loop_close(&r->loop);
    return rc;
}

static void replay_free_run(struct replay *r)
{
    free(r->daemons);
    free(r->endpoints);
    free(r->upstream);
    free(r->result);
}

/* --- the command -------------------------------------------------------------------------- */

static void replay_usage(FILE *out)
{
    fputs("usage: ballast replay [options] SCENARIO.yaml\n"
          "  --speed N      replay N times faster (timeline, duration and zone TTLs)\n"
          "  --out DIR      results: timeline.csv, plot.svg, summary.txt, run logs\n"
          "                 (default replay-out/NAME)\n"
          "  --compare      run again with the protections off and draw both runs\n"
          "  --protections-off  run once with the protections off (serve-stale disabled)\n"
          "  --bin-dir DIR  where ballast-authd and ballast-resolver are\n"
          "  --check        only check the scenario file\n"
          "  --quiet        no progress lines\n"
          "exit status: 0 expectations met, 1 an expectation failed, 2 error\n",
          out);
}

static int replay_parse_args(int argc, char **argv, struct replay_options *opt)
{
    static const struct option options[] = {
        {"speed", required_argument, NULL, 's'},
        {"out", required_argument, NULL, 'o'},
        {"compare", no_argument, NULL, 'C'},
        {"protections-off", no_argument, NULL, 'P'},
        {"bin-dir", required_argument, NULL, 'b'},
        {"check", no_argument, NULL, 'k'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *opt = (struct replay_options){.speed = 1.0};
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "h", options, NULL)) != -1) {
        char *end = NULL;
        switch (c) {
        case 's':
            opt->speed = strtod(optarg, &end);
            if (!end || *end || !(opt->speed >= 0.001 && opt->speed <= 100000)) {
                fprintf(stderr, "replay: --speed: expected a number between 0.001 and 100000\n");
                return BALLAST_EINVAL;
            }
            break;
        case 'o':
            opt->out_dir = optarg;
            break;
        case 'C':
            opt->compare = true;
            break;
        case 'P':
            opt->protections_off = true;
            break;
        case 'b':
            opt->bin_dir = optarg;
            break;
        case 'k':
            opt->check_only = true;
            break;
        case 'q':
            opt->quiet = true;
            break;
        case 'h':
            replay_usage(stdout);
            return 1;
        default:
            replay_usage(stderr);
            return BALLAST_EINVAL;
        }
    }
    if (optind != argc - 1) {
        replay_usage(stderr);
        return BALLAST_EINVAL;
    }
    opt->file = argv[optind];
    return BALLAST_OK;
}

int replay_main(int argc, char **argv)
{
    struct replay_options opt;
    int rc = replay_parse_args(argc, argv, &opt);
    if (rc != 0)
        return rc > 0 ? REPLAY_EXIT_OK : REPLAY_EXIT_ERROR;
    struct scenario s;
    struct config_error err = {0};
    char text[1200];
    if (scenario_load(opt.file, &s, &err) != 0) {
        fprintf(stderr, "%s\n", config_error_text(&err, text, sizeof text));
        return REPLAY_EXIT_ERROR;
    }
    if (opt.check_only) {
        printf("ok: %s: scenario '%s', %zu authorities, %zu zones, %zu events\n", opt.file, s.name,
               s.authority_count, s.zone_count, s.event_count);
        scenario_free(&s);
        return REPLAY_EXIT_OK;
    }
    signal(SIGPIPE, SIG_IGN);
    char given[PATH_MAX / 4 - 32], cwd[PATH_MAX / 4 - 32], out_dir[PATH_MAX / 2 - 64];
    snprintf(given, sizeof given, "%s", opt.out_dir ? opt.out_dir : "replay-out/");
    if (!opt.out_dir)
        snprintf(given, sizeof given, "replay-out/%s", s.name);
    /* daemons get absolute paths */
    if (given[0] == '/' || !getcwd(cwd, sizeof cwd))
        snprintf(out_dir, sizeof out_dir, "%s", given);
    else
        snprintf(out_dir, sizeof out_dir, "%s/%s", cwd, given);
    if (opt.compare && s.resolver.compare_unbound && s.port != 53) {
        fprintf(stderr,
                "%s: compare: unbound needs 'port: 53': Unbound only queries name "
                "servers on port 53\n",
                opt.file);
        scenario_free(&s);
        return REPLAY_EXIT_ERROR;
    }
    struct replay runs[2];
    memset(runs, 0, sizeof runs);
    size_t run_count = opt.compare ? 2 : 1;
    int status = REPLAY_EXIT_OK;
    for (size_t i = 0; i < run_count && status == REPLAY_EXIT_OK; i++) {
        struct replay *r = &runs[i];
        r->s = &s;
        r->opt = &opt;
        r->protections_off = i == 1 || opt.protections_off;
        r->unbound = i == 1 && s.resolver.compare_unbound;
        r->label = r->unbound ? "unbound" : r->protections_off ? "protections off" : "ballast";
        snprintf(r->run_dir, sizeof r->run_dir, "%s/run-%s", out_dir,
                 r->unbound           ? "unbound"
                 : r->protections_off ? "protections-off"
                                      : "ballast");
        if (replay_run_once(r) != 0)
            status = REPLAY_EXIT_ERROR;
    }
    if (status != REPLAY_EXIT_OK) {
        for (size_t i = 0; i < run_count; i++)
            replay_free_run(&runs[i]);
        scenario_free(&s);
        return status;
    }
    struct replay_run results[2];
    for (size_t i = 0; i < run_count; i++)
        results[i] =
            (struct replay_run){runs[i].label, runs[i].result, runs[i].result_count, opt.speed};
    char path[PATH_MAX + 64], errbuf[256];
    snprintf(path, sizeof path, "%s/timeline.csv", out_dir);
    if (replay_write_csv(path, &results[0], errbuf, sizeof errbuf) != 0)
        fprintf(stderr, "replay: %s\n", errbuf);
    if (run_count == 2) {
        snprintf(path, sizeof path, "%s/timeline-%s.csv", out_dir,
                 runs[1].unbound ? "unbound" : "protections-off");
        if (replay_write_csv(path, &results[1], errbuf, sizeof errbuf) != 0)
            fprintf(stderr, "replay: %s\n", errbuf);
    }
    snprintf(path, sizeof path, "%s/plot.svg", out_dir);
    char title[512];
    snprintf(title, sizeof title, "%s (speed %g)", s.name, opt.speed);
    if (replay_write_svg(path, title, results, run_count, runs[0].windows, runs[0].window_count,
                         errbuf, sizeof errbuf) != 0)
        fprintf(stderr, "replay: %s\n", errbuf);
    printf("\n");
    replay_print_summary(stdout, results, run_count);
    snprintf(path, sizeof path, "%s/summary.txt", out_dir);
    FILE *summary = fopen(path, "w");
    char failures[8192] = "";
    size_t failed = replay_check(&s.expect, &results[0], failures, sizeof failures);
    if (summary) {
        replay_print_summary(summary, results, run_count);
        fprintf(summary, "\nexpectations: %s\n%s", failed ? "FAILED" : "met", failures);
        fclose(summary);
    }
    if (run_count == 2) {
        char off[8192] = "";
        size_t off_failed = replay_check(&s.expect, &results[1], off, sizeof off);
        printf("\nwith %s, %zu expectation%s would fail%s\n%s",
               runs[1].unbound ? "Unbound" : "the protections off", off_failed,
               off_failed == 1 ? "" : "s", off_failed ? ":" : "", off);
    }
    if (failed) {
        printf("\nFAILED: %zu expectation%s not met:\n%s", failed, failed == 1 ? "" : "s",
               failures);
        status = REPLAY_EXIT_FAILED;
    } else {
        printf("\nok: every expectation met\n");
    }
    printf("results: %s (timeline.csv, plot.svg, summary.txt)\n", out_dir);
    for (size_t i = 0; i < run_count; i++)
        replay_free_run(&runs[i]);
    scenario_free(&s);
    return status;
}
