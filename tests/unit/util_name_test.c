// SPDX-License-Identifier: MIT
#include <criterion/criterion.h>
#include <string.h>

#include "util/util.h"

Test(name, valid)
{
	static const char *const good[] = {
		"web1", "a", "A-b_c.d", "0", "x..y", "vm-01.prod",
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	};

	for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
		cr_assert(name_valid(good[i]), "'%s' should be valid", good[i]);
		cr_assert_null(name_problem(good[i]));
	}
	cr_assert_eq(strlen(good[ARRAY_SIZE(good) - 1]), 64);
}

Test(name, invalid)
{
	static const char *const bad[] = {
		"", ".", "..", ".hidden", "a/b", "/", "../etc", "a b", "a\nb",
		"tab\there", "caf\xc3\xa9", "semi;colon", "star*", "a\\b",
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
		"\x01", "x\x7f",
	};

	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		const char *why = name_problem(bad[i]);

		cr_assert(!name_valid(bad[i]), "'%s' should be invalid", bad[i]);
		cr_assert_not_null(why);
		cr_assert_gt(strlen(why), 10);
	}
	cr_assert(!name_valid(NULL));
	cr_assert_eq(strlen(bad[14]), 65);
}
