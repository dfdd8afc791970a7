-- Cluster mode only: the name readers and writers use, spread over the *_local tables.
CREATE TABLE IF NOT EXISTS $database.$table$on_cluster
AS $database.$local_table
ENGINE = Distributed($cluster, $database, $local_table, $sharding_key)
