/* Native unit tests of snmp.c: `make -C guest-modules check`. */
#include <stdio.h>
#include <string.h>

#include "snmp.h"

static int failures;

#define CHECK(cond)                                                        \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                    \
        }                                                                  \
    } while (0)

static const char SNMP[] =
    "Ip: Forwarding DefaultTTL InReceives\n"
    "Ip: 2 64 11057\n"
    "Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens CurrEstab\n"
    "Tcp: 1 200 120000 -1 44 3\n"
    "Udp: InDatagrams NoPorts\n"
    "Udp: 58 0\n";

static bool field(const char *text, const char *section, const char *name, int64_t *value) {
    return snmp_field(text, strlen(text), section, name, value);
}

int main(void) {
    int64_t value = 0;
    CHECK(field(SNMP, "Tcp", "CurrEstab", &value) && value == 3);
    CHECK(field(SNMP, "Tcp", "MaxConn", &value) && value == -1);
    CHECK(field(SNMP, "Udp", "InDatagrams", &value) && value == 58);
    CHECK(field(SNMP, "Ip", "InReceives", &value) && value == 11057);
    CHECK(!field(SNMP, "Tcp", "NoSuchField", &value));
    CHECK(!field(SNMP, "Icmp", "InMsgs", &value));
    /* "Udp" must not match the "UdpLite" section. */
    CHECK(!field("UdpLite: InDatagrams\nUdpLite: 9\n", "Udp", "InDatagrams", &value));
    /* A header without its value line, a value that is not a number, a value line cut short. */
    CHECK(!field("Tcp: CurrEstab\n", "Tcp", "CurrEstab", &value));
    CHECK(!field("Tcp: CurrEstab\nTcp: 3x\n", "Tcp", "CurrEstab", &value));
    CHECK(!field("Tcp: A CurrEstab\nTcp: 1\n", "Tcp", "CurrEstab", &value));
    CHECK(!field("Tcp: CurrEstab\nTcp: 99999999999999999999\n", "Tcp", "CurrEstab", &value));
    /* A section split over two header/value pairs (TcpExt in /proc/net/netstat). */
    CHECK(field("TcpExt: A\nTcpExt: 1\nTcpExt: ListenDrops\nTcpExt: 7\n", "TcpExt", "ListenDrops", &value) &&
          value == 7);
    /* No trailing newline, and a buffer that is not NUL-terminated. */
    CHECK(field("Tcp: CurrEstab\nTcp: 5", "Tcp", "CurrEstab", &value) && value == 5);
    char unterminated[] = {'T', 'c', 'p', ':', ' ', 'X', '\n', 'T', 'c', 'p', ':', ' ', '4'};
    CHECK(snmp_field(unterminated, sizeof unterminated, "Tcp", "X", &value) && value == 4);
    CHECK(!field("", "Tcp", "X", &value));
    if (failures) {
        fprintf(stderr, "snmp_test: %d failed\n", failures);
        return 1;
    }
    printf("snmp_test: all passed\n");
    return 0;
}
