// A C++ file for g++ to compile (templates, the standard library) whose
// program then runs allocation-heavy containers.
#include <algorithm>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

struct Shape {
    virtual ~Shape() = default;
    virtual long area() const = 0;
};
struct Rect : Shape {
    long w, h;
    Rect(long w, long h) : w(w), h(h) {}
    long area() const override { return w * h; }
};

int main() {
    std::map<std::string, std::vector<int>> m;
    std::unordered_map<int, std::string> u;
    std::vector<std::unique_ptr<Shape>> shapes;
    for (int i = 0; i < 200000; i++) {
        m[std::to_string(i % 5000)].push_back(i);
        u[i % 7919] += static_cast<char>('a' + i % 26);
        shapes.push_back(std::make_unique<Rect>(i % 100, i % 37));
    }
    long s = 0;
    for (auto &kv : m) s += static_cast<long>(kv.second.size() * kv.first.size());
    for (auto &kv : u) s += static_cast<long>(kv.second.size());
    for (auto &p : shapes) s += p->area();
    std::sort(shapes.begin(), shapes.end(),
              [](const auto &a, const auto &b) { return a->area() < b->area(); });
    std::cout << s << " " << shapes.front()->area() << " " << shapes.back()->area() << std::endl;
}
