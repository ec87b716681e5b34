// SPDX-License-Identifier: MIT
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

static void parses(const char *s, uint64_t want)
{
	uint64_t v = 12345;

	cr_assert_eq(size_parse(s, &v), 0, "'%s' should parse", s);
	cr_assert_eq(v, want, "'%s' gave %llu, want %llu", s,
		     (unsigned long long)v, (unsigned long long)want);
}

static void rejects(const char *s, int err)
{
	uint64_t v = 12345;

	cr_assert_eq(size_parse(s, &v), err, "'%s' should fail with %d", s, err);
	cr_assert_eq(v, 12345, "'%s' changed the output on failure", s);
}

Test(size, plain_and_suffixes)
{
	parses("0", 0);
	parses("512", 512);
	parses("64K", 64ULL << 10);
	parses("64k", 64ULL << 10);
	parses("20G", 20ULL << 30);
	parses("1T", 1ULL << 40);
	parses("3M", 3ULL << 20);
	parses("2P", 2ULL << 50);
	parses("15E", 15ULL << 60);
	parses("1GiB", 1ULL << 30);
	parses("1GB", 1ULL << 30);
	parses("20G\n", 20ULL << 30);
	parses("  7K ", 7ULL << 10);
	parses("18446744073709551615", UINT64_MAX);
	parses("16777215T", 16777215ULL << 40);
}

Test(size, junk_and_overflow)
{
	rejects("10Q", -EINVAL);
	rejects("-1", -EINVAL);
	rejects("+1", -EINVAL);
	rejects("", -EINVAL);
	rejects("   ", -EINVAL);
	rejects("G", -EINVAL);
	rejects("1.5G", -EINVAL);
	rejects("1 G", -EINVAL);
	rejects("1GG", -EINVAL);
	rejects("1Gx", -EINVAL);
	rejects("0x10", -EINVAL);
	rejects("12\n34", -EINVAL);
	rejects("99999999999T", -ERANGE);
	rejects("16777216T", -ERANGE);
	rejects("18446744073709551616", -ERANGE);
	rejects("16E", -ERANGE);
	cr_assert_eq(size_parse(NULL, &(uint64_t){ 0 }), -EINVAL);
}

Test(size, format_exact)
{
	char buf[SIZE_STR_MAX];

	cr_assert_str_eq(size_format(0, buf, sizeof(buf)), "0");
	cr_assert_str_eq(size_format(512, buf, sizeof(buf)), "512");
	cr_assert_str_eq(size_format(1536ULL << 10, buf, sizeof(buf)), "1536K");
	cr_assert_str_eq(size_format(20ULL << 30, buf, sizeof(buf)), "20G");
	cr_assert_str_eq(size_format(1ULL << 40, buf, sizeof(buf)), "1T");
	cr_assert_str_eq(size_format(1ULL << 63, buf, sizeof(buf)), "8E");
	cr_assert_str_eq(size_format(UINT64_MAX, buf, sizeof(buf)),
			 "18446744073709551615");
	cr_assert_str_eq(size_format(1025, buf, sizeof(buf)), "1025");
}

Test(size, format_roundtrip)
{
	static const uint64_t values[] = {
		1, 1023, 1024, 4096, 65536, 1ULL << 30, 3ULL << 41,
		(1ULL << 40) + 4096, UINT64_MAX - 1,
	};
	char buf[SIZE_STR_MAX];

	for (size_t i = 0; i < ARRAY_SIZE(values); i++) {
		uint64_t back;

		size_format(values[i], buf, sizeof(buf));
		cr_assert_eq(size_parse(buf, &back), 0, "%s", buf);
		cr_assert_eq(back, values[i], "%s", buf);
	}
}

Test(size, format_human)
{
	char buf[32];

	cr_assert_str_eq(size_format_human(100, buf, sizeof(buf)), "100 B");
	cr_assert_str_eq(size_format_human(1536, buf, sizeof(buf)), "1.50 KiB");
	cr_assert_str_eq(size_format_human(20ULL << 30, buf, sizeof(buf)), "20.0 GiB");
	cr_assert_str_eq(size_format_human(500ULL << 20, buf, sizeof(buf)), "500 MiB");
	cr_assert_str_eq(size_format_human(UINT64_MAX, buf, sizeof(buf)), "16.0 EiB");
}

Test(base64, round_trip_and_rejects)
{
	static const char *const plain[] = { "", "f", "fo", "foo", "foob", "fooba", "foobar" };
	static const char *const coded[] = { "", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==",
					     "Zm9vYmE=", "Zm9vYmFy" };
	static const char *const bad[] = { "Zg=", "Z===", "Zm9v!A==", "=Zm9", "Zg==Zg==",
					   "Zm=v" };

	for (size_t i = 0; i < ARRAY_SIZE(plain); i++) {
		char *e = base64_encode(plain[i], strlen(plain[i]));
		uint8_t *d;
		size_t n;

		cr_assert_str_eq(e, coded[i]);
		cr_assert_eq(base64_decode(e, &d, &n), 0);
		cr_assert_eq(n, strlen(plain[i]));
		cr_assert_eq(memcmp(d, plain[i], n), 0);
		free(e);
		free(d);
	}
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		uint8_t *d = NULL;
		size_t n;

		cr_assert_eq(base64_decode(bad[i], &d, &n), -EINVAL, "'%s'", bad[i]);
	}
	{
		uint8_t all[256], *d;
		char *e;
		size_t n;

		for (int i = 0; i < 256; i++)
			all[i] = (uint8_t)i;
		e = base64_encode(all, sizeof(all));
		cr_assert_eq(base64_decode(e, &d, &n), 0);
		cr_assert_eq(n, 256);
		cr_assert_eq(memcmp(d, all, 256), 0);
		free(e);
		free(d);
	}
}
