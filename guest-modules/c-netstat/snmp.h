/* Parsing of the kernel's protocol counter tables (/proc/net/snmp, /proc/net/netstat).
 *
 * Both files hold pairs of lines: a header naming the fields of one protocol section
 * and a line of values in the same order:
 *
 *     Tcp: RtoAlgorithm RtoMin ... CurrEstab InSegs OutSegs ...
 *     Tcp: 1 200 ... 3 10998 6694 ...
 *
 * Pure code: no I/O, so it is unit-tested natively (snmp_test.c). */
#ifndef NETSTAT_SNMP_H
#define NETSTAT_SNMP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Finds `field` of section `section` (without the colon, e.g. "Tcp") in `text`
 * (`len` bytes, not necessarily NUL-terminated). Stores its value in `*value` and
 * returns true; returns false when the section or field is missing or the value is
 * not an integer. Negative values (Tcp MaxConn is -1) are returned as is. */
bool snmp_field(const char *text, size_t len, const char *section, const char *field,
                int64_t *value);

#endif
