-- Tiled keeps its catalog in POSTGRES_DB (tiled_catalog) and its tables in a second database.
CREATE DATABASE tiled_storage;
