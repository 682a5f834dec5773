"""The browser inbox (``offload-bridge inbox``): people answer Offload's questions in a web page.

A server-rendered FastAPI app behind an identity-aware proxy. ``feed`` reads the topics into ``store`` (the
waiting questions, and each case's questions, answers and outcomes); ``pages`` renders them and publishes
answers; ``identity`` says who is asking and guards the forms; ``app`` puts them together.
"""
