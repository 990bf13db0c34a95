"""The only code that speaks SQL: one component per table family, one connection and transaction shared
by all (database.Store).
"""
