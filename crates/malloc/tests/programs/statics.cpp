// Allocations before main (C++ static constructors), after main (static
// destructors), and through the dynamic loader (dlopen, dlsym, dlerror).
#include <dlfcn.h>

#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

static std::vector<std::string> early = [] {
    std::vector<std::string> v;
    for (int i = 0; i < 2000; i++) v.push_back(std::string(static_cast<size_t>(i % 300), 'x'));
    return v;
}();

static std::map<int, std::string> table = {{1, "one"}, {2, "two"}, {3, "three"}};

struct Early {
    Early() : p(new int[100000]()) {}
    ~Early() { delete[] p; }
    int *p;
};
static Early early_obj;
static std::unique_ptr<std::string> late;

int main() {
    size_t total = 0;
    for (auto &s : early) total += s.size();
    void *m = dlopen("libm.so.6", RTLD_NOW);
    auto cosine = reinterpret_cast<double (*)(double)>(dlsym(m ? m : RTLD_DEFAULT, "cos"));
    void *none = dlopen("libkmem-does-not-exist.so", RTLD_NOW);
    const char *err = dlerror();
    late = std::make_unique<std::string>(2000, 'y');
    std::cout << total << " " << table[3] << " " << early_obj.p[99999] << " "
              << (cosine ? cosine(0.0) : -1.0) << " " << (none == nullptr) << " "
              << (err != nullptr) << " " << late->size() << std::endl;
    if (m) dlclose(m);
}
