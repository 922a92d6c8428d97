/*
 * ggmlcheck reads GGUF files with ggml's own reader, gguf_init_from_file
 * (no_alloc), and prints one line per file for the differential test:
 *
 *   <path>\tREFUSED
 *   <path>\tCRASHED\t<signal>
 *   <path>\tOK\t<version>\t<n_kv>\t<n_tensors>\t<alignment>\t<data offset>\t<architecture hex>\t<chat template 0/1>\t<name hex>:<offset>,...
 *
 * Each file is read in a child process: ggml aborts or divides by zero on
 * some malformed files, which counts as a refusal. The declarations follow
 * ggml's gguf.h (the package ships the library without headers).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/wait.h>

struct ggml_context;
struct gguf_context;
struct gguf_init_params {
	bool no_alloc;
	struct ggml_context **ctx;
};
struct gguf_context *gguf_init_from_file(const char *fname, struct gguf_init_params params);
void gguf_free(struct gguf_context *ctx);
uint32_t gguf_get_version(const struct gguf_context *ctx);
size_t gguf_get_alignment(const struct gguf_context *ctx);
size_t gguf_get_data_offset(const struct gguf_context *ctx);
int64_t gguf_get_n_kv(const struct gguf_context *ctx);
int64_t gguf_find_key(const struct gguf_context *ctx, const char *key);
int gguf_get_kv_type(const struct gguf_context *ctx, int64_t key_id);
const char *gguf_get_val_str(const struct gguf_context *ctx, int64_t key_id);
int64_t gguf_get_n_tensors(const struct gguf_context *ctx);
const char *gguf_get_tensor_name(const struct gguf_context *ctx, int64_t tensor_id);
size_t gguf_get_tensor_offset(const struct gguf_context *ctx, int64_t tensor_id);

#define GGUF_TYPE_STRING 8

static void hex(const char *s) {
	for (; *s; s++) printf("%02x", (unsigned char)*s);
}

static void check(const char *path) {
	struct gguf_init_params params = {true, NULL};
	struct gguf_context *ctx = gguf_init_from_file(path, params);
	if (!ctx) {
		printf("%s\tREFUSED\n", path);
		return;
	}
	printf("%s\tOK\t%u\t%lld\t%lld\t%zu\t%zu\t", path, gguf_get_version(ctx), (long long)gguf_get_n_kv(ctx),
	       (long long)gguf_get_n_tensors(ctx), gguf_get_alignment(ctx), gguf_get_data_offset(ctx));
	int64_t arch = gguf_find_key(ctx, "general.architecture");
	if (arch >= 0 && gguf_get_kv_type(ctx, arch) == GGUF_TYPE_STRING) hex(gguf_get_val_str(ctx, arch));
	else printf("-");
	printf("\t%d\t", gguf_find_key(ctx, "tokenizer.chat_template") >= 0);
	for (int64_t i = 0; i < gguf_get_n_tensors(ctx); i++) {
		if (i) printf(",");
		hex(gguf_get_tensor_name(ctx, i));
		printf(":%zu", gguf_get_tensor_offset(ctx, i));
	}
	printf("\n");
	gguf_free(ctx);
}

int main(int argc, char **argv) {
	char path[4096];
	/* File paths come one a line on stdin (thousands of them). */
	while (fgets(path, sizeof path, stdin)) {
		path[strcspn(path, "\n")] = 0;
		fflush(stdout);
		pid_t pid = fork();
		if (pid == 0) {
			int null = open("/dev/null", O_WRONLY);
			dup2(null, 2);
			check(path);
			fflush(stdout);
			_exit(0);
		}
		int status = 0;
		waitpid(pid, &status, 0);
		if (WIFSIGNALED(status)) printf("%s\tCRASHED\t%d\n", path, WTERMSIG(status));
	}
	(void)argc;
	(void)argv;
	return 0;
}
