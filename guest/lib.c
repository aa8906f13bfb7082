/*
 * lib.c - freestanding runtime: memory/string functions, printf, asserts.
 */
#include "guest.h"

/* ---- memory and strings ------------------------------------------------- */

/*
 * rep stosb/movsb rather than C loops: short, fast on current CPUs, and gcc
 * cannot "optimise" them back into a call to memset/memcpy (itself).
 * DF is clear: ring 3 starts with RFLAGS = 0x202 and nothing sets it.
 */
void *memset(void *dst, int c, size_t n)
{
	void *d = dst;

	__asm__ __volatile__("rep stosb"
			     : "+D"(d), "+c"(n)
			     : "a"(c)
			     : "memory");
	return dst;
}

void *memcpy(void *restrict dst, const void *restrict src, size_t n)
{
	void *d = dst;

	__asm__ __volatile__("rep movsb"
			     : "+D"(d), "+S"(src), "+c"(n)
			     :
			     : "memory");
	return dst;
}

void *memmove(void *dst, const void *src, size_t n)
{
	unsigned char *d = dst;
	const unsigned char *s = src;

	if (d <= s || d >= s + n)
		return memcpy(dst, src, n);
	/* Overlap with dst above src: copy backwards. */
	while (n--)
		d[n] = s[n];
	return dst;
}

int memcmp(const void *a, const void *b, size_t n)
{
	const unsigned char *p = a, *q = b;

	for (; n; n--, p++, q++)
		if (*p != *q)
			return *p - *q;
	return 0;
}

size_t strlen(const char *s)
{
	const char *p = s;

	while (*p)
		p++;
	return p - s;
}

/* ---- vsnprintf ---------------------------------------------------------- */

/*
 * Supported: %d %i %u %x %X %p %s %c %%, flags '-' and '0', a decimal width,
 * length modifiers l, ll, z (all 64-bit here; without one, int-sized).
 * Unknown conversions are printed verbatim.
 */

struct out {
	char *buf;
	size_t cap; /* usable bytes, excluding the terminating NUL */
	size_t len; /* bytes produced so far (may exceed cap) */
};

static void put(struct out *o, char c)
{
	if (o->len < o->cap)
		o->buf[o->len] = c;
	o->len++;
}

static void put_n(struct out *o, char c, int n)
{
	while (n-- > 0)
		put(o, c);
}

/* Emit prefix + body padded to width: spaces left or right, or zeros between. */
static void put_field(struct out *o, const char *prefix, const char *body,
		      int body_len, int width, int left, int zero)
{
	int plen = (int)strlen(prefix);
	int pad = width - plen - body_len;

	if (!left && !zero)
		put_n(o, ' ', pad);
	while (*prefix)
		put(o, *prefix++);
	if (!left && zero)
		put_n(o, '0', pad);
	for (int i = 0; i < body_len; i++)
		put(o, body[i]);
	if (left)
		put_n(o, ' ', pad);
}

static void put_uint(struct out *o, uint64_t v, unsigned base, int upper,
		     const char *prefix, int width, int left, int zero)
{
	const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
	char tmp[24]; /* 2^64 has 20 decimal digits */
	int n = sizeof(tmp);

	do {
		tmp[--n] = digits[v % base];
		v /= base;
	} while (v);
	put_field(o, prefix, tmp + n, (int)sizeof(tmp) - n, width, left, zero);
}

int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
	struct out o = { buf, size ? size - 1 : 0, 0 };

	for (; *fmt; fmt++) {
		int left = 0, zero = 0, width = 0, lng = 0;

		if (*fmt != '%') {
			put(&o, *fmt);
			continue;
		}
		fmt++;
		for (;; fmt++) {
			if (*fmt == '-')
				left = 1;
			else if (*fmt == '0')
				zero = 1;
			else
				break;
		}
		while (*fmt >= '0' && *fmt <= '9') {
			/* Clamp: a field can never usefully exceed one PRINT. */
			if (width < LHPVM_MAX_PRINT_LEN)
				width = width * 10 + (*fmt - '0');
			fmt++;
		}
		while (*fmt == 'l' || *fmt == 'z') {
			lng = 1;
			fmt++;
		}

		switch (*fmt) {
		case 'd':
		case 'i': {
			int64_t v = lng ? va_arg(ap, long long) : va_arg(ap, int);
			/* Negate in unsigned arithmetic: INT64_MIN is fine too. */
			uint64_t mag = v < 0 ? -(uint64_t)v : (uint64_t)v;

			put_uint(&o, mag, 10, 0, v < 0 ? "-" : "", width, left, zero);
			break;
		}
		case 'u':
		case 'x':
		case 'X': {
			uint64_t v = lng ? va_arg(ap, unsigned long long) : va_arg(ap, unsigned int);

			put_uint(&o, v, *fmt == 'u' ? 10 : 16, *fmt == 'X', "", width, left, zero);
			break;
		}
		case 'p':
			put_uint(&o, (uintptr_t)va_arg(ap, void *), 16, 0, "0x", width, left, zero);
			break;
		case 's': {
			const char *s = va_arg(ap, const char *);

			if (!s)
				s = "(null)";
			put_field(&o, "", s, (int)strlen(s), width, left, 0);
			break;
		}
		case 'c': {
			char c = (char)va_arg(ap, int);

			put_field(&o, "", &c, 1, width, left, 0);
			break;
		}
		case '%':
			put(&o, '%');
			break;
		case '\0':
			/* Lone '%' at the end: print it, and let the loop end. */
			put(&o, '%');
			fmt--;
			break;
		default:
			put(&o, '%');
			put(&o, *fmt);
			break;
		}
	}

	if (size)
		buf[o.len < o.cap ? o.len : o.cap] = '\0';
	return (int)o.len;
}

int snprintf(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, size, fmt, ap);
	va_end(ap);
	return n;
}

int printf(const char *fmt, ...)
{
	/* +1 for vsnprintf's NUL, so a full LHPVM_MAX_PRINT_LEN can be printed.
	 * On the ring-3 stack (20 KiB): the image is shared, so no static buffer. */
	char buf[LHPVM_MAX_PRINT_LEN + 1];
	va_list ap;
	int n;
	size_t len;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);

	len = (size_t)n < sizeof(buf) - 1 ? (size_t)n : sizeof(buf) - 1;
	if (len)
		hc_print(buf, len);
	return n;
}

/* ---- asserts ------------------------------------------------------------ */

_Noreturn void guest_assert_fail(const char *file, int line, const char *expr)
{
	printf("GUEST_ASSERT failed: %s:%d: %s\n", file, line, expr);
	hc_exit(GUEST_ASSERT_EXIT);
}
