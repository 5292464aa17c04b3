"""The Spark backend of the batch job (``[training] backend = "spark"``, docs/spark.md).

Same configuration, validation rules and run folder as the local backend; the models
Spark runs are popular, itemknn (exact cosine), als (MLlib) and rules (pair rules).
Everything here imports pyspark lazily, so the package loads without it.
"""
