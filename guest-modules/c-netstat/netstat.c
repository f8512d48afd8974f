/* c-netstat: TCP and UDP counters of the host, read from /proc/net/snmp and
 * /proc/net/netstat, as a wasmond metric module written in C.
 *
 * It needs one grant: the host's /proc/net, read-only, seen by the module at the path
 * of its `proc_net` param (default "/proc/net"). Without it, init fails and says so.
 *
 * Params:
 *   proc_net     where the protocol tables are (default "/proc/net")
 *   group        the metric group (default "network")
 *   min_poll_ms  a table is re-read at most this often, so that the metrics of one
 *                collection share one sample and one read (default 1000)
 *
 * Counters are reported as gmond's python modules would: uint32 with slope "positive",
 * so gmetad stores them as RRD COUNTERs (which handle the 32-bit wrap) and graphs rates.
 * tcp_retrans_percent is computed here, between two calls.
 *
 * Ownership follows wit-bindgen's C rules: exported functions free their arguments,
 * and every string returned to the host is malloc'd (the bindings free it after). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "metric_module.h"
#include "snmp.h"

/* The protocol tables are a few KB; a larger file is cut here, and the fields past the
 * cut read as missing. */
#define MAX_TABLE_BYTES (64 * 1024)
#define MAX_PATH_BYTES 512

enum table { SNMP, NETSTAT };

static const char *const TABLE_FILES[] = {[SNMP] = "snmp", [NETSTAT] = "netstat"};

/* A metric that is one field of one table. */
struct counter {
    const char *name;
    enum table table;
    const char *section;
    const char *field;
    wasmond_metric_types_slope_t slope;
    const char *units;
    const char *description;
};

#define POSITIVE WASMOND_METRIC_TYPES_SLOPE_POSITIVE
#define BOTH WASMOND_METRIC_TYPES_SLOPE_BOTH

static const struct counter COUNTERS[] = {
    {"tcp_established", SNMP, "Tcp", "CurrEstab", BOTH, "connections",
     "TCP connections in state ESTABLISHED or CLOSE-WAIT"},
    {"tcp_active_opens", SNMP, "Tcp", "ActiveOpens", POSITIVE, "connections",
     "TCP connections opened by this host"},
    {"tcp_passive_opens", SNMP, "Tcp", "PassiveOpens", POSITIVE, "connections",
     "TCP connections accepted by this host"},
    {"tcp_attempt_fails", SNMP, "Tcp", "AttemptFails", POSITIVE, "connections",
     "TCP connection attempts that failed"},
    {"tcp_in_segs", SNMP, "Tcp", "InSegs", POSITIVE, "segments", "TCP segments received"},
    {"tcp_out_segs", SNMP, "Tcp", "OutSegs", POSITIVE, "segments", "TCP segments sent"},
    {"tcp_retrans_segs", SNMP, "Tcp", "RetransSegs", POSITIVE, "segments",
     "TCP segments retransmitted"},
    {"tcp_in_errs", SNMP, "Tcp", "InErrs", POSITIVE, "segments", "TCP segments received in error"},
    {"tcp_out_rsts", SNMP, "Tcp", "OutRsts", POSITIVE, "segments", "TCP resets sent"},
    {"tcp_listen_overflows", NETSTAT, "TcpExt", "ListenOverflows", POSITIVE, "connections",
     "Times a listen queue overflowed"},
    {"tcp_listen_drops", NETSTAT, "TcpExt", "ListenDrops", POSITIVE, "connections",
     "Connections dropped at a listening socket"},
    {"udp_in_datagrams", SNMP, "Udp", "InDatagrams", POSITIVE, "datagrams",
     "UDP datagrams delivered"},
    {"udp_out_datagrams", SNMP, "Udp", "OutDatagrams", POSITIVE, "datagrams", "UDP datagrams sent"},
    {"udp_no_ports", SNMP, "Udp", "NoPorts", POSITIVE, "datagrams",
     "UDP datagrams to a port nobody listens on"},
    {"udp_in_errors", SNMP, "Udp", "InErrors", POSITIVE, "datagrams",
     "UDP datagrams that could not be delivered"},
};

#define COUNTER_COUNT (sizeof COUNTERS / sizeof COUNTERS[0])
#define RETRANS_PERCENT "tcp_retrans_percent"

static struct {
    char proc_net[MAX_PATH_BYTES];
    char group[128];
    int64_t min_poll_ms;
    /* The sample behind the last tcp_retrans_percent, and that value. */
    uint64_t retrans_generation;
    int64_t last_retrans;
    int64_t last_out_segs;
    float last_percent;
} state;

/* The last read of each table. `generation` counts reads (0: never read). */
static struct sample {
    char text[MAX_TABLE_BYTES];
    size_t len;
    int64_t read_at_ms;
    uint64_t generation;
} samples[2];

static void log_line(wasmond_metric_log_level_t level, const char *message) {
    metric_module_string_t text;
    metric_module_string_set(&text, message);
    wasmond_metric_log_log(level, &text);
}

/* Sets `*err` to a malloc'd copy of the message, as the bindings require. */
static bool fail(metric_module_string_t *err, const char *message) {
    metric_module_string_dup(err, message);
    return false;
}

static int64_t now_ms(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/* Reads a whole table into `sample`; false with errno set on failure. */
static bool read_table(enum table table, struct sample *sample) {
    char path[MAX_PATH_BYTES + 16];
    snprintf(path, sizeof path, "%s/%s", state.proc_net, TABLE_FILES[table]);
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        return false;
    }
    size_t total = 0;
    /* /proc files report size 0: read until EOF rather than trusting fstat. */
    while (total < sizeof sample->text) {
        ssize_t n = read(fd, sample->text + total, sizeof sample->text - total);
        if (n < 0) {
            int saved = errno;
            close(fd);
            errno = saved;
            return false;
        }
        if (n == 0) {
            break;
        }
        total += (size_t)n;
    }
    close(fd);
    sample->len = total;
    sample->generation++;
    return true;
}

/* The table as last read, re-read when older than min_poll_ms; NULL with errno set. */
static const struct sample *table_sample(enum table table) {
    struct sample *sample = &samples[table];
    int64_t now = now_ms();
    if (sample->generation != 0 && now - sample->read_at_ms < state.min_poll_ms) {
        return sample;
    }
    if (!read_table(table, sample)) {
        return NULL;
    }
    sample->read_at_ms = now;
    return sample;
}

/* Reads one field; on failure writes a message into `err`. */
static bool read_field(enum table table, const char *section, const char *field, int64_t *value,
                       metric_module_string_t *err) {
    char message[MAX_PATH_BYTES + 128];
    const struct sample *sample = table_sample(table);
    if (sample == NULL) {
        snprintf(message, sizeof message, "cannot read %s/%s: %s", state.proc_net,
                 TABLE_FILES[table], strerror(errno));
        return fail(err, message);
    }
    if (!snmp_field(sample->text, sample->len, section, field, value)) {
        snprintf(message, sizeof message, "no %s %s in %s/%s", section, field, state.proc_net,
                 TABLE_FILES[table]);
        return fail(err, message);
    }
    return true;
}

/* The value of param `name`, or NULL; the last one wins, as in gmond. */
static const metric_module_string_t *param(const metric_module_list_tuple2_string_string_t *params,
                                           const char *name) {
    const metric_module_string_t *found = NULL;
    size_t name_len = strlen(name);
    for (size_t i = 0; i < params->len; i++) {
        const metric_module_string_t *key = &params->ptr[i].f0;
        if (key->len == name_len && memcmp(key->ptr, name, name_len) == 0) {
            found = &params->ptr[i].f1;
        }
    }
    return found;
}

/* Copies a param's value into `out` (NUL-terminated), or `fallback` when unset; false
 * when it does not fit. Params are freed after init, so values are copied out. */
static bool copy_param(const metric_module_list_tuple2_string_string_t *params, const char *name,
                       const char *fallback, char *out, size_t cap) {
    const metric_module_string_t *value = param(params, name);
    if (value == NULL) {
        snprintf(out, cap, "%s", fallback);
        return true;
    }
    if (value->len >= cap) {
        return false;
    }
    memcpy(out, value->ptr, value->len);
    out[value->len] = '\0';
    return true;
}

static void describe(metric_module_metric_descriptor_t *d, const char *name,
                     wasmond_metric_types_value_type_t type, wasmond_metric_types_slope_t slope,
                     const char *units, const char *format, const char *description) {
    metric_module_string_dup(&d->name, name);
    d->value_type = type;
    metric_module_string_dup(&d->units, units);
    d->slope = slope;
    metric_module_string_dup(&d->format, format);
    d->time_max = 60;
    metric_module_string_dup(&d->description, description);
    d->groups.len = 1;
    d->groups.ptr = malloc(sizeof(metric_module_string_t));
    metric_module_string_dup(&d->groups.ptr[0], state.group);
    d->extra.len = 0;
    d->extra.ptr = NULL;
}

static bool read_params(metric_module_list_tuple2_string_string_t *params,
                        metric_module_string_t *err) {
    if (!copy_param(params, "proc_net", "/proc/net", state.proc_net, sizeof state.proc_net)) {
        return fail(err, "param proc_net: path too long");
    }
    if (!copy_param(params, "group", "network", state.group, sizeof state.group)) {
        return fail(err, "param group: too long");
    }
    char min_poll[24];
    char *end = NULL;
    if (!copy_param(params, "min_poll_ms", "1000", min_poll, sizeof min_poll)) {
        return fail(err, "param min_poll_ms: not a number of milliseconds");
    }
    state.min_poll_ms = strtoll(min_poll, &end, 10);
    if (end == min_poll || *end != '\0' || state.min_poll_ms < 0) {
        return fail(err, "param min_poll_ms: not a number of milliseconds");
    }
    return true;
}

bool exports_metric_module_init(metric_module_list_tuple2_string_string_t *params,
                                metric_module_list_metric_descriptor_t *ret,
                                metric_module_string_t *err) {
    bool ok = read_params(params, err);
    metric_module_list_tuple2_string_string_free(params);
    if (!ok) {
        return false;
    }
    /* A restart after a trap runs init again: start from fresh samples. */
    memset(samples, 0, sizeof samples);
    state.retrans_generation = 0;
    /* Fail now, with a clear message, rather than on every collection. */
    int64_t probe;
    if (!read_field(SNMP, "Tcp", "CurrEstab", &probe, err)) {
        return false;
    }

    size_t count = COUNTER_COUNT + 1;
    ret->ptr = calloc(count, sizeof(metric_module_metric_descriptor_t));
    ret->len = count;
    for (size_t i = 0; i < COUNTER_COUNT; i++) {
        const struct counter *c = &COUNTERS[i];
        describe(&ret->ptr[i], c->name, WASMOND_METRIC_TYPES_VALUE_TYPE_UINT32, c->slope,
                 c->units, "%u", c->description);
    }
    describe(&ret->ptr[COUNTER_COUNT], RETRANS_PERCENT, WASMOND_METRIC_TYPES_VALUE_TYPE_FLOAT,
             BOTH, "%", "%.2f", "Share of TCP segments sent that were retransmissions, between the last two samples");

    char message[MAX_PATH_BYTES + 64];
    snprintf(message, sizeof message, "reading protocol counters from %s", state.proc_net);
    log_line(WASMOND_METRIC_LOG_LEVEL_INFO, message);
    return true;
}

/* 100 * retransmitted / sent between the last two samples that this metric saw; 0
 * until there are two. Asked again before a new sample, it repeats its value. */
static bool retrans_percent(float *percent, metric_module_string_t *err) {
    int64_t retrans, out_segs;
    if (!read_field(SNMP, "Tcp", "RetransSegs", &retrans, err) ||
        !read_field(SNMP, "Tcp", "OutSegs", &out_segs, err)) {
        return false;
    }
    uint64_t generation = samples[SNMP].generation;
    if (generation != state.retrans_generation) {
        int64_t sent = out_segs - state.last_out_segs;
        int64_t resent = retrans - state.last_retrans;
        bool have_previous = state.retrans_generation != 0;
        state.last_percent =
            (have_previous && sent > 0 && resent >= 0) ? 100.0f * (float)resent / (float)sent : 0.0f;
        state.retrans_generation = generation;
        state.last_retrans = retrans;
        state.last_out_segs = out_segs;
    }
    *percent = state.last_percent;
    return true;
}

static const struct counter *find_counter(const metric_module_string_t *name) {
    for (size_t i = 0; i < COUNTER_COUNT; i++) {
        if (strlen(COUNTERS[i].name) == name->len &&
            memcmp(COUNTERS[i].name, name->ptr, name->len) == 0) {
            return &COUNTERS[i];
        }
    }
    return NULL;
}

static bool handle(const metric_module_string_t *name, metric_module_metric_value_t *ret,
                   metric_module_string_t *err) {
    if (name->len == strlen(RETRANS_PERCENT) && memcmp(name->ptr, RETRANS_PERCENT, name->len) == 0) {
        ret->tag = WASMOND_METRIC_TYPES_METRIC_VALUE_FLOAT;
        return retrans_percent(&ret->val.float_, err);
    }
    const struct counter *c = find_counter(name);
    if (c == NULL) {
        return fail(err, "unknown metric");
    }
    int64_t value;
    if (!read_field(c->table, c->section, c->field, &value, err)) {
        return false;
    }
    ret->tag = WASMOND_METRIC_TYPES_METRIC_VALUE_UINT32;
    /* Kernel counters are 64-bit; gmond's uint32 wraps, and RRD COUNTERs expect that. */
    ret->val.uint32 = (uint32_t)value;
    return true;
}

bool exports_metric_module_handler(metric_module_string_t *name, metric_module_metric_value_t *ret,
                                   metric_module_string_t *err) {
    bool ok = handle(name, ret, err);
    metric_module_string_free(name);
    return ok;
}

void exports_metric_module_cleanup(void) {
    memset(samples, 0, sizeof samples);
    state.retrans_generation = 0;
}
