-- Second database on the team's PostgreSQL: Prefect uses `prefect`, MLflow uses `mlflow`.
CREATE DATABASE mlflow;
