-- The primaries' schema, the table behind shop.models.Product.
CREATE TABLE shop_product (id INTEGER PRIMARY KEY, name TEXT NOT NULL, region TEXT NOT NULL);
