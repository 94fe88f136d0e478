-- The migrations as they are.
SELECT 1;
