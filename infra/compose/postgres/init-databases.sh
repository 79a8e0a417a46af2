#!/bin/sh
# First start of Postgres only (mounted into /docker-entrypoint-initdb.d): one
# database per service, owned by POSTGRES_USER. Prefect, MLflow and Airflow
# each create their own tables in theirs.
set -eu
for db in prefect mlflow airflow; do
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
        -c "CREATE DATABASE $db OWNER \"$POSTGRES_USER\""
done
