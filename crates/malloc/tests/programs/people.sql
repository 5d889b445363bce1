-- A database built and queried by sqlite3: inserts, an index, a join with
-- grouping, updates, deletes, VACUUM. Eleven lines of output.
CREATE TABLE people(id INTEGER PRIMARY KEY, name TEXT, team INTEGER, score REAL);
WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 60000)
  INSERT INTO people SELECT x, hex(zeroblob(x % 40)) || x, x % 97, (x * 7919) % 1000 / 10.0 FROM n;
CREATE TABLE teams(id INTEGER PRIMARY KEY, label TEXT);
WITH RECURSIVE n(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM n WHERE x < 96)
  INSERT INTO teams SELECT x, 'team-' || x FROM n;
CREATE INDEX people_team ON people(team, score);
SELECT t.label, count(*), round(avg(p.score), 3), max(length(p.name))
  FROM people p JOIN teams t ON p.team = t.id GROUP BY t.id ORDER BY 3 DESC LIMIT 10;
UPDATE people SET name = name || name WHERE id % 3 = 0;
DELETE FROM people WHERE id % 5 = 0;
VACUUM;
SELECT count(*), sum(length(name)), group_concat(DISTINCT team % 7) FROM people;
