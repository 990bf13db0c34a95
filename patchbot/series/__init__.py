"""Assemble parsed mails into series and versions: take mail in once, file it, pull requests."""
