// A WASI command in C for the wasm driver's tests: it reads its first
// argument, the GREETING environment variable and /data/in.txt (a mounted
// directory), and writes what it read to /data/out.txt.
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
	const char *greeting = getenv("GREETING");
	char line[256] = {0};
	FILE *in = fopen("/data/in.txt", "r");
	if (argc < 2 || !greeting || !in) {
		fprintf(stderr, "need an argument, GREETING and /data/in.txt\n");
		return 2;
	}
	if (!fgets(line, sizeof line, in)) {
		fprintf(stderr, "/data/in.txt is empty\n");
		return 2;
	}
	fclose(in);
	FILE *out = fopen("/data/out.txt", "w");
	if (!out) {
		perror("/data/out.txt");
		return 2;
	}
	fprintf(out, "arg=%s greeting=%s file=%s", argv[1], greeting, line);
	fclose(out);
	printf("wrote /data/out.txt\n");
	return 0;
}
