# An object-heavy Python workload: classes, dicts, lists, strings, JSON,
# sorting and a cycle-collected graph. Prints checksums only.
import gc
import hashlib
import json
import random

random.seed(42)


class Node:
    def __init__(self, key, payload):
        self.key = key
        self.payload = payload
        self.edges = []


nodes = [Node(i, "n%d-%s" % (i, "x" * (i % 50))) for i in range(60000)]
for n in nodes:
    for _ in range(3):
        n.edges.append(nodes[random.randrange(len(nodes))])
table = {}
for n in nodes:
    table.setdefault(n.key % 997, []).append(n.payload)
doc = {str(k): v[:20] for k, v in table.items()}
text = json.dumps(doc, sort_keys=True)
back = json.loads(text)
words = sorted(w for v in back.values() for w in v)
h = hashlib.sha256()
for w in words:
    h.update(w.encode())
del nodes, table
gc.collect()
big = [bytearray(random.randrange(1, 100000)) for _ in range(300)]
print(len(text), len(words), h.hexdigest(), sum(len(b) for b in big))
