/* See snmp.h. Works on a length-bounded buffer and never reads past it. */
#include "snmp.h"

#include <string.h>

/* A view of one line of the buffer. */
struct line {
    const char *start;
    size_t len;
};

/* Splits the line starting at `*pos` off the buffer; false at the end. */
static bool next_line(const char *text, size_t len, size_t *pos, struct line *out) {
    if (*pos >= len) {
        return false;
    }
    const char *start = text + *pos;
    const char *newline = memchr(start, '\n', len - *pos);
    size_t line_len = newline ? (size_t)(newline - start) : len - *pos;
    out->start = start;
    out->len = line_len;
    *pos += line_len + (newline ? 1 : 0);
    return true;
}

/* True when the line starts with "<section>:". */
static bool is_section(struct line line, const char *section) {
    size_t n = strlen(section);
    return line.len > n && memcmp(line.start, section, n) == 0 && line.start[n] == ':';
}

/* Moves `*pos` past the next space-separated word of `line`; false when none is left. */
static bool next_word(struct line line, size_t *pos, struct line *word) {
    while (*pos < line.len && line.start[*pos] == ' ') {
        (*pos)++;
    }
    if (*pos >= line.len) {
        return false;
    }
    size_t start = *pos;
    while (*pos < line.len && line.start[*pos] != ' ') {
        (*pos)++;
    }
    word->start = line.start + start;
    word->len = *pos - start;
    return true;
}

static bool word_is(struct line word, const char *text) {
    return word.len == strlen(text) && memcmp(word.start, text, word.len) == 0;
}

/* Parses a decimal integer that fills the whole word; false on anything else or on
 * overflow of int64_t. */
static bool parse_int(struct line word, int64_t *value) {
    size_t i = 0;
    bool negative = word.len > 0 && word.start[0] == '-';
    if (negative) {
        i = 1;
    }
    if (i == word.len) {
        return false;
    }
    uint64_t magnitude = 0;
    for (; i < word.len; i++) {
        char c = word.start[i];
        if (c < '0' || c > '9') {
            return false;
        }
        if (magnitude > (UINT64_MAX - 9) / 10) {
            return false;
        }
        magnitude = magnitude * 10 + (uint64_t)(c - '0');
    }
    if (magnitude > (uint64_t)INT64_MAX) {
        return false;
    }
    *value = negative ? -(int64_t)magnitude : (int64_t)magnitude;
    return true;
}

/* The index of `field` among the words of a header line, or -1. The first word is
 * the "Section:" label and is not counted. */
static long field_index(struct line header, const char *field) {
    size_t pos = 0;
    struct line word;
    next_word(header, &pos, &word);
    for (long index = 0; next_word(header, &pos, &word); index++) {
        if (word_is(word, field)) {
            return index;
        }
    }
    return -1;
}

static bool value_at(struct line values, long index, int64_t *value) {
    size_t pos = 0;
    struct line word;
    next_word(values, &pos, &word);
    for (long i = 0; next_word(values, &pos, &word); i++) {
        if (i == index) {
            return parse_int(word, value);
        }
    }
    return false;
}

bool snmp_field(const char *text, size_t len, const char *section, const char *field,
                int64_t *value) {
    size_t pos = 0;
    struct line header;
    while (next_line(text, len, &pos, &header)) {
        if (!is_section(header, section)) {
            continue;
        }
        struct line values;
        if (!next_line(text, len, &pos, &values) || !is_section(values, section)) {
            return false;
        }
        long index = field_index(header, field);
        if (index >= 0) {
            return value_at(values, index, value);
        }
        /* Some kernels split a section over several header/value pairs: keep looking. */
    }
    return false;
}
