"""The Gradio app and the assistant (LangChain tools over `factory.api`)."""
