/*
 * ldouble.c: the C half of `server/src/num.rs`. It owns every conversion whose exact result depends on the C
 * library or on C's `long double` type, which Rust lacks:
 *
 *   - shoal_string2ld / shoal_ld2string_human / shoal_ld_add: INCRBYFLOAT's arithmetic. Redis does it in
 *     `long double` (80-bit x87 extended precision on x86_64), parses with strtold and prints with
 *     "%.17Lf"; only the same C types and the same libc calls give byte-identical replies.
 *   - shoal_string2d: Redis's strtod-based double parsing (hex floats, "inf", "infinity", subnormals and
 *     ERANGE handling are glibc's, not Rust's).
 *
 * The functions mirror Redis 7.0's util.c (string2ld, string2d, ld2string with LD_STR_HUMAN) line for line,
 * so any difference from Redis is a bug here.
 *
 * A long double crosses the FFI boundary as an opaque 16-byte, 16-aligned blob (`shoal_ld`, `LongDouble` in
 * Rust): Rust has no type with the x87 layout, and passing the blob by pointer keeps the ABI trivial.
 */

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Redis's MAX_LONG_DOUBLE_CHARS: the longest string string2ld accepts (minus one) and the buffer ld2string
 * prints into. The largest finite 80-bit value printed with %.17Lf takes 4952 bytes, so it always fits. */
#define SHOAL_MAX_LONG_DOUBLE_CHARS (5 * 1024)

/* The Rust side reserves 16 bytes aligned to 16; every mainstream ABI's long double fits (8 bytes where it is
 * just a double, 16 for x87 extended and IEEE quad). */
_Static_assert(sizeof(long double) <= 16, "long double does not fit the 16-byte LongDouble blob");
_Static_assert(_Alignof(long double) <= 16, "long double needs more than 16-byte alignment");

typedef struct {
    unsigned char bytes[16];
} shoal_ld;

static long double ld_load(const shoal_ld *p) {
    long double v;
    memcpy(&v, p->bytes, sizeof v);
    return v;
}

static void ld_store(shoal_ld *p, long double v) {
    /* Zero first so the bytes beyond the value (x87 padding, or all of the tail when long double is a double)
     * are deterministic for the Rust side. */
    memset(p->bytes, 0, sizeof p->bytes);
    memcpy(p->bytes, &v, sizeof v);
}

size_t shoal_max_long_double_chars(void) {
    return SHOAL_MAX_LONG_DOUBLE_CHARS;
}

/* Redis's string2ld: the whole of s[0..slen) must be a strtold number with no leading space, no overflow to
 * infinity, no underflow to zero and no NaN. The copy into a NUL-terminated buffer is what makes an embedded NUL
 * fail (strtold stops there, short of slen). Returns 1 and stores the value on success, 0 otherwise. */
int shoal_string2ld(const char *s, size_t slen, shoal_ld *out) {
    char buf[SHOAL_MAX_LONG_DOUBLE_CHARS];
    long double value;
    char *eptr;

    if (slen == 0 || slen >= sizeof(buf)) return 0;
    memcpy(buf, s, slen);
    buf[slen] = '\0';

    errno = 0;
    value = strtold(buf, &eptr);
    if (isspace((unsigned char)buf[0]) || eptr[0] != '\0' || (size_t)(eptr - buf) != slen ||
        (errno == ERANGE && (value == HUGE_VAL || value == -HUGE_VAL || fpclassify(value) == FP_ZERO)) ||
        errno == EINVAL || isnan(value))
        return 0;

    ld_store(out, value);
    return 1;
}

/* Redis's string2d. `s` must be NUL-terminated at s[slen] (Redis's sds strings always are); the Rust wrapper
 * guarantees it. Returns 1 and stores the value on success, 0 otherwise. */
int shoal_string2d(const char *s, size_t slen, double *out) {
    double value;
    char *eptr;

    errno = 0;
    value = strtod(s, &eptr);
    if (slen == 0 || isspace((unsigned char)s[0]) || (size_t)(eptr - s) != slen ||
        (errno == ERANGE && (value == HUGE_VAL || value == -HUGE_VAL || fpclassify(value) == FP_ZERO)) ||
        isnan(value))
        return 0;

    *out = value;
    return 1;
}

/* Redis's ld2string(buf, len, value, LD_STR_HUMAN): "%.17Lf" with the trailing zeros (and a bare trailing dot)
 * removed, "-0" turned into "0", infinities spelled "inf"/"-inf" and NaN "nan" explicitly. Returns the length
 * written (NUL not counted), or 0 when `len` is too small, like Redis. */
size_t shoal_ld2string_human(char *buf, size_t len, const shoal_ld *v) {
    long double value = ld_load(v);
    size_t l;

    if (isinf(value)) {
        if (len < 5) goto err; /* "-inf\0" */
        if (value > 0) {
            memcpy(buf, "inf", 3);
            l = 3;
        } else {
            memcpy(buf, "-inf", 4);
            l = 4;
        }
    } else if (isnan(value)) {
        if (len < 4) goto err; /* "nan\0" */
        memcpy(buf, "nan", 3);
        l = 3;
    } else {
        int n = snprintf(buf, len, "%.17Lf", value);
        if (n < 0) goto err;
        l = (size_t)n;
        if (l + 1 > len) goto err;
        if (strchr(buf, '.') != NULL) {
            char *p = buf + l - 1;
            while (*p == '0') {
                p--;
                l--;
            }
            if (*p == '.') l--;
        }
        if (l == 2 && buf[0] == '-' && buf[1] == '0') {
            buf[0] = '0';
            l = 1;
        }
    }
    buf[l] = '\0';
    return l;
err:
    if (len > 0) buf[0] = '\0';
    return 0;
}

void shoal_ld_add(shoal_ld *out, const shoal_ld *a, const shoal_ld *b) {
    ld_store(out, ld_load(a) + ld_load(b));
}

void shoal_ld_from_ll(shoal_ld *out, long long n) {
    ld_store(out, (long double)n);
}

double shoal_ld_to_double(const shoal_ld *v) {
    return (double)ld_load(v);
}

int shoal_ld_is_nan(const shoal_ld *v) {
    return isnan(ld_load(v)) ? 1 : 0;
}

int shoal_ld_is_inf(const shoal_ld *v) {
    return isinf(ld_load(v)) ? 1 : 0;
}
