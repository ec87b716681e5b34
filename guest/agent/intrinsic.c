// SPDX-License-Identifier: MIT
/*
 * The guest's intrinsic items, as Hyper-V's Linux daemon reports them,
 * from what every Linux has without packages: the host name and
 * /etc/hosts (what `hostname -f` finds through the files database; no
 * resolver is linked into a static program), /etc/os-release, uname(2)
 * and getifaddrs(3).
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "agent.h"

const char *const intrinsic_keys[INTRINSIC_ITEMS] = {
	"FullyQualifiedDomainName",
	"OSName",
	"OSVersion",
	"OSBuildNumber",
	"ProcessorArchitecture",
	"NetworkAddressIPv4",
	"NetworkAddressIPv6",
	"IntegrationServicesVersion",
};

/*
 * The canonical name of the host: the first name on the /etc/hosts line
 * that lists its short name (as the files database answers
 * AI_CANONNAME), or the short name itself.
 */
static void fqdn(char *buf, size_t len)
{
	char host[256] = "", line[1024];
	FILE *f;

	gethostname(host, sizeof(host) - 1);
	snprintf(buf, len, "%s", host);
	f = fopen("/etc/hosts", "re");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		char *save = NULL, *addr, *first, *name;

		line[strcspn(line, "#\n")] = '\0';
		addr = strtok_r(line, " \t", &save);
		first = addr ? strtok_r(NULL, " \t", &save) : NULL;
		for (name = first; name; name = strtok_r(NULL, " \t", &save)) {
			if (strcmp(name, host) == 0) {
				snprintf(buf, len, "%s", first);
				fclose(f);
				return;
			}
		}
	}
	fclose(f);
}

/* KEY from os-release, quotes taken off. */
static void os_release(const char *key, char *buf, size_t len)
{
	static const char *const files[] = { "/etc/os-release", "/usr/lib/os-release" };
	size_t k = strlen(key);

	buf[0] = '\0';
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		char line[1024];
		FILE *f = fopen(files[i], "re");

		if (!f)
			continue;
		while (fgets(line, sizeof(line), f)) {
			char *v = line + k + 1;
			size_t n;

			if (strncmp(line, key, k) || line[k] != '=')
				continue;
			v[strcspn(v, "\n")] = '\0';
			n = strlen(v);
			if (n >= 2 && (v[0] == '"' || v[0] == '\'') && v[n - 1] == v[0]) {
				v[n - 1] = '\0';
				v++;
			}
			snprintf(buf, len, "%s", v);
			fclose(f);
			return;
		}
		fclose(f);
		return;
	}
}

/* The addresses of @family on interfaces other than loopback, ';' between. */
static void addresses(int family, char *buf, size_t len)
{
	struct ifaddrs *ifs, *i;
	size_t used = 0;

	buf[0] = '\0';
	if (getifaddrs(&ifs) < 0)
		return;
	for (i = ifs; i; i = i->ifa_next) {
		char text[INET6_ADDRSTRLEN];
		const void *a;

		if (!i->ifa_addr || i->ifa_addr->sa_family != family || (i->ifa_flags & IFF_LOOPBACK))
			continue;
		a = family == AF_INET ? (const void *)&((struct sockaddr_in *)i->ifa_addr)->sin_addr :
					(const void *)&((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr;
		if (!inet_ntop(family, a, text, sizeof(text)))
			continue;
		/* Whole addresses only: a list that would pass the limit stops. */
		if (used + strlen(text) + 2 > len)
			break;
		used += (size_t)snprintf(buf + used, len - used, "%s%s", used ? ";" : "", text);
	}
	freeifaddrs(ifs);
}

void intrinsic_value(unsigned int i, char *buf, size_t len)
{
	struct utsname u;

	buf[0] = '\0';
	switch (i) {
	case 0:
		fqdn(buf, len);
		break;
	case 1:
		os_release("NAME", buf, len);
		if (!buf[0])
			snprintf(buf, len, "Linux");
		break;
	case 2:
		os_release("VERSION_ID", buf, len);
		break;
	case 3:
	case 4:
		if (uname(&u) == 0)
			snprintf(buf, len, "%s", i == 3 ? u.release : u.machine);
		break;
	case 5:
		addresses(AF_INET, buf, len);
		break;
	case 6:
		addresses(AF_INET6, buf, len);
		break;
	case 7:
		snprintf(buf, len, "%s", AGENT_VERSION);
		break;
	}
}
