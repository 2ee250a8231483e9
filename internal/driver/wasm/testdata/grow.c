// Allocates memory 1 MiB at a time until malloc fails, then exits 12:
// the runner must say the module hit its memory limit.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// The blocks escape through sink, or the compiler may elide the
// allocations altogether.
char *volatile sink;

int main(void) {
	for (int i = 1;; i++) {
		char *p = malloc(1 << 20);
		if (!p) {
			fprintf(stderr, "malloc failed after %d MiB\n", i - 1);
			return 12;
		}
		memset(p, 1, 1 << 20);
		sink = p;
	}
}
