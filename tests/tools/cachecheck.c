// SPDX-License-Identifier: MIT
/*
 * cachecheck: readers of a cached value never see it old (tests/fs_cache.sh).
 *
 * Readers are separate processes (as another shell would be) that open,
 * read and close a file in a loop, through the kernel's page cache.  A
 * writer changes the value; after each write() returns it publishes
 * what the value is now (a sequence number and the text, in shared
 * memory).  A read that started after a publication, with no newer one
 * while it ran, must return the published text: anything else is a
 * stale value, and the check fails.
 *
 *   cachecheck values FILE BASE COUNT
 *	writes BASE + k*4096 (a size: memory/startup) for k = 1..COUNT
 *   cachecheck command FILE CTL COMMAND VALUE
 *	writes COMMAND to CTL (start, stop), then expects FILE to read VALUE
 *   cachecheck wait FILE VALUE MS
 *	reads FILE until it reads VALUE; prints how long that took, or
 *	fails after MS milliseconds
 *
 * Prints "ok ..." and exits 0, or says what was stale and exits 1.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define READERS	3
#define TEXT	64

struct shared {
	_Atomic unsigned long seq;	/* odd while the writer changes the value */
	char text[TEXT];		/* the value as of seq */
	_Atomic unsigned long reads;
	_Atomic int stop;
	char stale[256];
	_Atomic int failed;
};

static double now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int read_value(const char *file, char *buf, size_t len)
{
	int fd = open(file, O_RDONLY);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	return 0;
}

static void reader(struct shared *sh, const char *file)
{
	char want[TEXT], got[TEXT];

	while (!atomic_load(&sh->stop)) {
		unsigned long before = atomic_load(&sh->seq), after;

		if (before & 1)
			continue;	/* a change under way: nothing to expect yet */
		memcpy(want, sh->text, TEXT);
		if (read_value(file, got, sizeof(got)))
			continue;
		after = atomic_load(&sh->seq);
		atomic_fetch_add(&sh->reads, 1);
		if (before == after && strcmp(got, want) != 0 && !atomic_exchange(&sh->failed, 1))
			snprintf(sh->stale, sizeof(sh->stale),
				 "read '%s' after the write of '%s' had returned", got, want);
	}
	_exit(0);
}

static struct shared *start_readers(const char *file, pid_t *pids)
{
	struct shared *sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
				 MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (sh == MAP_FAILED)
		return NULL;
	memset(sh, 0, sizeof(*sh));
	atomic_store(&sh->seq, 1);	/* nothing published yet */
	for (int i = 0; i < READERS; i++) {
		pids[i] = fork();
		if (pids[i] == 0)
			reader(sh, file);
	}
	return sh;
}

static int stop_readers(struct shared *sh, pid_t *pids)
{
	atomic_store(&sh->stop, 1);
	for (int i = 0; i < READERS; i++)
		waitpid(pids[i], NULL, 0);
	if (atomic_load(&sh->failed)) {
		printf("stale: %s\n", sh->stale);
		return 1;
	}
	return 0;
}

/* The writer's side: the value is being changed, then it is @text. */
static void changing(struct shared *sh)
{
	atomic_fetch_add(&sh->seq, 1);	/* odd */
}

static void publish(struct shared *sh, const char *text)
{
	snprintf(sh->text, TEXT, "%s", text);
	atomic_fetch_add(&sh->seq, 1);	/* even: readers expect it */
}

/*
 * Without O_TRUNC: a truncating open drops the page cache by itself, and
 * the check is of the service telling the kernel what changed.
 */
static int write_value(const char *file, const char *value)
{
	int fd = open(file, O_WRONLY);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = write(fd, value, strlen(value));
	close(fd);
	return n < 0 ? -errno : 0;
}

static int do_values(const char *file, unsigned long long base, int count)
{
	pid_t pids[READERS];
	struct shared *sh;
	char text[TEXT];
	unsigned long first;

	if (read_value(file, text, sizeof(text)))
		return 2;
	sh = start_readers(file, pids);
	if (!sh)
		return 2;
	publish(sh, text);
	usleep(20000);
	first = atomic_load(&sh->reads);
	for (int k = 1; k <= count; k++) {
		snprintf(text, sizeof(text), "%llu", base + (unsigned long long)k * 4096);
		changing(sh);
		if (write_value(file, text)) {
			printf("write of %s failed: %s\n", text, strerror(errno));
			stop_readers(sh, pids);
			return 1;
		}
		publish(sh, text);
		usleep(2000);	/* let the readers read it a few times */
	}
	if (stop_readers(sh, pids))
		return 1;
	printf("ok %d values, %lu reads (%lu before the first change)\n", count,
	       atomic_load(&sh->reads), first);
	return 0;
}

static int do_command(const char *file, const char *ctl, const char *cmd, const char *value)
{
	pid_t pids[READERS];
	struct shared *sh;
	char text[TEXT];

	if (read_value(file, text, sizeof(text)))
		return 2;
	sh = start_readers(file, pids);
	if (!sh)
		return 2;
	publish(sh, text);
	usleep(20000);
	changing(sh);
	if (write_value(ctl, cmd)) {
		printf("%s > %s failed: %s\n", cmd, ctl, strerror(errno));
		stop_readers(sh, pids);
		return 1;
	}
	publish(sh, value);
	usleep(100000);
	if (stop_readers(sh, pids))
		return 1;
	printf("ok %s: %lu reads\n", cmd, atomic_load(&sh->reads));
	return 0;
}

static int do_wait(const char *file, const char *value, int ms)
{
	double start = now_ms();
	char got[TEXT] = "";

	while (now_ms() - start < ms) {
		if (read_value(file, got, sizeof(got)) == 0 && strcmp(got, value) == 0) {
			printf("ok %.1f ms\n", now_ms() - start);
			return 0;
		}
	}
	printf("stale: '%s' still read '%s' %d ms after it became '%s'\n", file, got, ms, value);
	return 1;
}

int main(int argc, char **argv)
{
	if (argc == 5 && strcmp(argv[1], "values") == 0)
		return do_values(argv[2], strtoull(argv[3], NULL, 10), atoi(argv[4]));
	if (argc == 6 && strcmp(argv[1], "command") == 0)
		return do_command(argv[2], argv[3], argv[4], argv[5]);
	if (argc == 5 && strcmp(argv[1], "wait") == 0)
		return do_wait(argv[2], argv[3], atoi(argv[4]));
	fprintf(stderr, "usage: cachecheck values FILE BASE COUNT | command FILE CTL CMD VALUE | wait FILE VALUE MS\n");
	return 2;
}
