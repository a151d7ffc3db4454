"""The warehouse: the dbt build runner (single writer) and the atomic analyst publication."""
