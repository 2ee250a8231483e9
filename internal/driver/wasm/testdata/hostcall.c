// Imports a host function no runtime provides: the driver must refuse it
// and name the import.
__attribute__((import_module("env"), import_name("gantry_magic"))) int gantry_magic(int);

int main(void) { return gantry_magic(1); }
