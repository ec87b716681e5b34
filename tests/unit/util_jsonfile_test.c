// SPDX-License-Identifier: MIT
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util/util.h"
#include "util/test_hooks.h"

static char dir[64];
static char path[128];

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/fsvisor-json-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/obj.json", dir);
}

static void teardown(void)
{
	char cmd[160];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	cr_assert_eq(system(cmd), 0);
}

/* A document whose every byte depends on @gen, so a mix of two shows. */
static json_t *make_doc(int gen, size_t pad_len)
{
	char *pad = malloc(pad_len + 1);
	json_t *doc;

	memset(pad, 'a' + gen % 26, pad_len);
	pad[pad_len] = 0;
	doc = json_pack("{s:i, s:s, s:i}", "gen", gen, "pad", pad, "tail", gen);
	free(pad);
	return doc;
}

/* Returns the generation of a well-formed document, -1 otherwise. */
static int doc_gen(const char *p)
{
	json_t *doc = NULL;
	const char *pad;
	int gen, tail;
	char err[256];

	if (json_file_load(p, &doc, err, sizeof(err)))
		return -1;
	if (json_unpack(doc, "{s:i, s:s, s:i}", "gen", &gen, "pad", &pad,
			"tail", &tail) || gen != tail) {
		json_decref(doc);
		return -1;
	}
	for (const char *c = pad; *c; c++) {
		if (*c != 'a' + gen % 26) {
			json_decref(doc);
			return -1;
		}
	}
	json_decref(doc);
	return gen;
}

TestSuite(jsonfile, .init = setup, .fini = teardown);

Test(jsonfile, save_and_load)
{
	json_t *doc = make_doc(3, 10), *back = NULL;
	char err[256];

	cr_assert_eq(json_file_save(path, doc), 0);
	cr_assert_eq(json_file_load(path, &back, err, sizeof(err)), 0);
	cr_assert(json_equal(doc, back));
	json_decref(doc);
	json_decref(back);
}

Test(jsonfile, errors)
{
	json_t *doc = NULL;
	char err[256] = "";
	char bad[160];
	FILE *f;

	cr_assert_eq(json_file_load(path, &doc, err, sizeof(err)), -ENOENT);
	cr_assert_not_null(strstr(err, "obj.json"));

	snprintf(bad, sizeof(bad), "%s/bad.json", dir);
	f = fopen(bad, "w");
	fputs("{\"a\": 1,", f);
	fclose(f);
	cr_assert_eq(json_file_load(bad, &doc, err, sizeof(err)), -EINVAL);
	cr_assert_not_null(strstr(err, "bad.json:"), "%s", err);

	f = fopen(bad, "w");
	fputs("{\"a\": 1, \"a\": 2}", f);
	fclose(f);
	cr_assert_eq(json_file_load(bad, &doc, err, sizeof(err)), -EINVAL);

	doc = make_doc(1, 1);
	cr_assert_eq(json_file_save("/nonexistent-dir/x.json", doc), -ENOENT);
	json_decref(doc);
}

static enum json_save_step kill_at;

static void kill_hook(enum json_save_step s)
{
	if (s == kill_at)
		raise(SIGKILL);
}

/* The child is killed at every step in turn: old or new, never torn. */
Test(jsonfile, sigkill_at_each_step)
{
	json_t *old_doc = make_doc(1, 200000);

	cr_assert_eq(json_file_save(path, old_doc), 0);
	json_decref(old_doc);

	for (int s = 0; s < JSON_SAVE_STEPS; s++) {
		int status, gen;
		pid_t pid = fork();

		cr_assert_geq(pid, 0);
		if (pid == 0) {
			json_t *doc = make_doc(2 + s, 200000);

			kill_at = (enum json_save_step)s;
			json_save_step_hook = kill_hook;
			json_file_save(path, doc);
			_exit(0);
		}
		cr_assert_eq(waitpid(pid, &status, 0), pid);
		cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
			  "step %d: child was not killed", s);
		gen = doc_gen(path);
		if (s < JSON_SAVE_RENAMED)
			cr_assert_eq(gen, 1, "step %d: file should be the old one, gen %d",
				     s, gen);
		else
			cr_assert_eq(gen, 2 + s, "step %d: file should be the new one, gen %d",
				     s, gen);
	}
}

/* Kills at random moments while a child saves in a loop. */
Test(jsonfile, sigkill_at_random, .timeout = 60)
{
	json_t *first = make_doc(0, 50000);
	unsigned seed = (unsigned)time(NULL);

	cr_assert_eq(json_file_save(path, first), 0);
	json_decref(first);
	srand(seed);

	for (int trial = 0; trial < 100; trial++) {
		int pipefd[2], status, gen;
		char ready;
		pid_t pid;

		cr_assert_eq(pipe(pipefd), 0);
		pid = fork();
		cr_assert_geq(pid, 0);
		if (pid == 0) {
			close(pipefd[0]);
			if (write(pipefd[1], "r", 1) != 1)
				_exit(1);
			for (int g = 1;; g++) {
				json_t *doc = make_doc(g, 50000 + (size_t)g * 7);

				json_file_save(path, doc);
				json_decref(doc);
			}
		}
		close(pipefd[1]);
		cr_assert_eq(read(pipefd[0], &ready, 1), 1);
		close(pipefd[0]);
		usleep((useconds_t)(rand() % 3000));
		kill(pid, SIGKILL);
		cr_assert_eq(waitpid(pid, &status, 0), pid);
		gen = doc_gen(path);
		cr_assert_geq(gen, 0, "trial %d (seed %u): torn or missing file", trial,
			      seed);
	}
}
