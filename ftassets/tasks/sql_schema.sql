-- The small company database the sql task asks questions about. Salaries and budgets are
-- distinct so that ORDER BY ... LIMIT questions have exactly one right answer.

CREATE TABLE departments (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  city TEXT NOT NULL,
  budget INTEGER NOT NULL
);

CREATE TABLE employees (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  department_id INTEGER NOT NULL REFERENCES departments(id),
  salary INTEGER NOT NULL,
  city TEXT NOT NULL,
  hire_year INTEGER NOT NULL
);

CREATE TABLE projects (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  department_id INTEGER NOT NULL REFERENCES departments(id),
  budget INTEGER NOT NULL,
  status TEXT NOT NULL
);

INSERT INTO departments VALUES
  (1, 'Sales', 'Ashford', 420000),
  (2, 'Marketing', 'Brookvale', 310000),
  (3, 'Engineering', 'Westfield', 980000),
  (4, 'Finance', 'Ashford', 270000),
  (5, 'Support', 'Riverton', 190000),
  (6, 'Research', 'Westfield', 650000);

INSERT INTO employees VALUES
  (1, 'Anna Vance', 5, 73000, 'Westfield', 2012),
  (2, 'Ben Irwin', 1, 51000, 'Oakridge', 2014),
  (3, 'Clara Klein', 4, 82500, 'Brookvale', 2020),
  (4, 'David Ellis', 5, 38000, 'Riverton', 2020),
  (5, 'Emma Gray', 1, 41000, 'Oakridge', 2021),
  (6, 'Felix Hale', 3, 44000, 'Ashford', 2020),
  (7, 'Grace Dale', 5, 78500, 'Ashford', 2021),
  (8, 'Henry Hale', 4, 69000, 'Oakridge', 2018),
  (9, 'Iris Lane', 4, 35500, 'Oakridge', 2019),
  (10, 'Jack Moss', 3, 90000, 'Brookvale', 2014),
  (11, 'Kate Irwin', 1, 64000, 'Oakridge', 2016),
  (12, 'Leo Stone', 4, 45500, 'Riverton', 2023),
  (13, 'Maya Price', 3, 34000, 'Oakridge', 2013),
  (14, 'Noah Ellis', 5, 37500, 'Westfield', 2014),
  (15, 'Olivia Lane', 2, 59500, 'Westfield', 2018),
  (16, 'Paul Carter', 6, 58500, 'Ashford', 2020),
  (17, 'Rosa Vance', 3, 36000, 'Riverton', 2023),
  (18, 'Sam Moss', 5, 47000, 'Westfield', 2021),
  (19, 'Tara Price', 1, 92000, 'Ashford', 2016),
  (20, 'Victor Reed', 6, 67000, 'Ashford', 2012),
  (21, 'Wendy Klein', 6, 59000, 'Oakridge', 2022),
  (22, 'Adam Price', 3, 94500, 'Westfield', 2022),
  (23, 'Beth Moss', 1, 84500, 'Westfield', 2017),
  (24, 'Carl Gray', 5, 68000, 'Ashford', 2019),
  (25, 'Diana Carter', 2, 39500, 'Riverton', 2014),
  (26, 'Eric Irwin', 4, 46000, 'Westfield', 2019),
  (27, 'Fiona Dale', 2, 72000, 'Westfield', 2018),
  (28, 'George Turner', 3, 85500, 'Brookvale', 2018),
  (29, 'Hannah Turner', 3, 95000, 'Westfield', 2017),
  (30, 'Ivan Nash', 2, 88000, 'Brookvale', 2013);

INSERT INTO projects VALUES
  (1, 'Apollo', 3, 250000, 'active'),
  (2, 'Beacon', 2, 80000, 'completed'),
  (3, 'Cobalt', 3, 175000, 'planned'),
  (4, 'Delta', 1, 60000, 'active'),
  (5, 'Ember', 6, 310000, 'active'),
  (6, 'Falcon', 5, 45000, 'completed'),
  (7, 'Granite', 4, 95000, 'planned'),
  (8, 'Harbor', 6, 140000, 'completed'),
  (9, 'Iris', 2, 70000, 'active'),
  (10, 'Jupiter', 3, 420000, 'planned'),
  (11, 'Kestrel', 1, 115000, 'completed'),
  (12, 'Lumen', 5, 30000, 'active');
