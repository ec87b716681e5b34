// SPDX-License-Identifier: MIT
/*
 * Object names.  They become file names under the state directory, so the
 * rules are what keeps a name from escaping it: no '/', no "..", no dot
 * files, nothing outside a small portable alphabet.
 */
#include <string.h>

#include "util/util.h"

static bool name_char_ok(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

const char *name_problem(const char *name)
{
	size_t len;

	if (!name || !name[0])
		return "a name cannot be empty";
	len = strnlen(name, NAME_MAX_LEN + 1);
	if (len > NAME_MAX_LEN)
		return "a name is at most 64 characters";
	if (name[0] == '.')
		return "a name cannot start with a dot";
	for (size_t i = 0; i < len; i++) {
		if (!name_char_ok(name[i]))
			return "a name may only contain letters, digits, '.', '_' and '-'";
	}
	return NULL;
}

bool name_valid(const char *name)
{
	return name_problem(name) == NULL;
}
